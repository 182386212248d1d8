//! Time windows (`hours:`), used by `require` and by `anomalies`.

use super::super::Hours;
use super::fields::HOURS_FIELDS;
use super::walker::{N, V, clip};

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

pub(super) fn hours(v: &mut V, n: &N, what: &str) -> Option<Hours> {
    const EXAMPLE: &str =
        "hours: { days: [mon, tue, wed, thu, fri], from: \"08:00\", to: \"18:00\" }";
    let o = v.obj(n, what, HOURS_FIELDS)?;
    let mut ok = true;
    let mut days: Vec<u32> = Vec::new();
    let mut day_names: Vec<&str> = Vec::new();
    match o.get("days") {
        None => {
            days = (0..7).collect();
            day_names = DAYS.to_vec();
        }
        Some(d) => {
            for (s, item) in v.strings(d, &format!("`days` of {what}"), "days: [mon, tue]") {
                let lower = s.to_ascii_lowercase();
                let short = lower.get(..3).unwrap_or(&lower);
                match DAYS.iter().position(|x| *x == short) {
                    Some(i) if lower.len() == 3 || full_day(&lower) => {
                        if !days.contains(&(i as u32)) {
                            days.push(i as u32);
                            day_names.push(DAYS[i]);
                        }
                    }
                    _ => {
                        v.err_h(
                            &item.referenced,
                            format!("unknown day {:?} in {what}", clip(s)),
                            "days are mon, tue, wed, thu, fri, sat, sun",
                        );
                        ok = false;
                    }
                }
            }
            if days.is_empty() && ok {
                v.err_h(&d.referenced, format!("{what} lists no days"), EXAMPLE);
                ok = false;
            }
        }
    }
    let mut time = |key: &str| -> Option<(u32, String)> {
        let t = v.req(&o, key, what, EXAMPLE)?;
        let s = v.string(t, &format!("`{key}` of {what}"))?;
        match hhmm(s) {
            Some(m) => Some((m, s.trim().to_string())),
            None => {
                v.err_h(
                    &t.referenced,
                    format!(
                        "`{key}` of {what} is {:?}; expected a time HH:MM (UTC)",
                        clip(s)
                    ),
                    "e.g. \"08:00\" or \"18:30\"",
                );
                None
            }
        }
    };
    let from = time("from");
    let to = time("to");
    let (Some((from, from_s)), Some((to, to_s))) = (from, to) else {
        return None;
    };
    if from >= to {
        let at = o.get("to").map_or(o.loc, |t| t.referenced);
        v.err_h(
            &at,
            format!("{what}: `to` ({to_s}) must be later than `from` ({from_s})"),
            "windows are within one UTC day; use 00:00 to 24:00 for the whole day",
        );
        return None;
    }
    days.sort_unstable();
    ok.then(|| Hours {
        days,
        from,
        to,
        source: format!("{} {from_s}-{to_s}", day_names.join(",")),
    })
}

fn full_day(s: &str) -> bool {
    [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ]
    .contains(&s)
}

/// `HH:MM` as minutes since midnight (`24:00` allowed as an end).
fn hhmm(s: &str) -> Option<u32> {
    let (h, m) = s.trim().split_once(':')?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (m < 60 && h * 60 + m <= 1440).then_some(h * 60 + m)
}
