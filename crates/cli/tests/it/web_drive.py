#!/usr/bin/env python3
"""Drives the breakglass web UI in a real browser (Debian chromium + chromedriver, Selenium)
for crates/cli/tests/it/web.rs.

Input (stdin, JSON): {"url", "scenario", "js": bool, "shots": dir,
  "users": {name: {"password", "secret", "last_step"}}, ...scenario arguments}.
Output (stdout, JSON): what the scenario saw, for the Rust test to assert on. A failed check
raises, printing the page's text to stderr.

TOTP codes come from oathtool, never from our own code; each code is used once (steps walk
forward like the Rust harness's User::otp).
"""
import json
import os
import subprocess
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.support.ui import WebDriverWait

PHONE = (390, 844)
DESKTOP = (1280, 900)


class Otp:
    def __init__(self, secret, last_step):
        self.secret = secret
        self.last = last_step

    def code(self):
        while True:
            now = int(time.time())
            cur = now // 30
            lo = cur - 1 if now % 30 < 27 else cur
            step = max(self.last + 1, lo)
            if step <= cur + 1:
                self.last = step
                out = subprocess.run(
                    ["oathtool", "--totp", "-b", "--now", "@%d" % (step * 30 + 1), self.secret],
                    check=True, capture_output=True, text=True)
                return out.stdout.strip()
            time.sleep(0.2)


class Browser:
    def __init__(self, cfg, label):
        self.cfg = cfg
        self.url = cfg["url"]
        self.label = label
        self.js = cfg.get("js", True)
        opts = webdriver.ChromeOptions()
        opts.binary_location = "/usr/bin/chromium"
        for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--no-first-run", "--disable-extensions", "--lang=en-US",
                  "--window-size=%d,%d" % PHONE]:
            opts.add_argument(a)
        if cfg.get("tls_test_ca"):
            # The test CA is not in the browser's store; the connection is still TLS.
            opts.add_argument("--ignore-certificate-errors")
        if not self.js:
            opts.add_experimental_option(
                "prefs", {"profile.managed_default_content_settings.javascript": 2})
        self.d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
        self.d.set_page_load_timeout(30)
        self.viewport(*PHONE)

    def viewport(self, w, h):
        self.d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": w, "height": h, "deviceScaleFactor": 1, "mobile": w < 600})

    def close(self):
        self.d.quit()

    def go(self, path):
        self.d.get(self.url + path)

    def text(self):
        return self.d.find_element(By.TAG_NAME, "body").text

    def fail(self, msg):
        sys.stderr.write("%s [%s at %s]\n--- page text ---\n%s\n" % (
            msg, self.label, self.d.current_url, self.text()))
        raise SystemExit(1)

    def expect(self, needle):
        # Case-insensitive: state badges are upper-cased by the style sheet.
        if needle.lower() not in self.text().lower():
            self.fail("expected %r on the page" % needle)

    def fill(self, name, value):
        el = self.d.find_element(By.NAME, name)
        el.clear()
        el.send_keys(value)

    def submit(self, form_action):
        """Sends a form by tapping its button and waits for the next page."""
        old = self.d.find_element(By.TAG_NAME, "html")
        self.d.find_element(
            By.CSS_SELECTOR, "form[action='%s'] button[type=submit]" % form_action).click()

        def replaced(_):
            try:
                old.is_enabled()
                return False
            except WebDriverException:  # stale, or no longer in the document
                return True

        WebDriverWait(self.d, 20).until(replaced)

    def content_width(self):
        m = self.d.execute_cdp_cmd("Page.getLayoutMetrics", {})
        return m["cssContentSize"]["width"], m["cssContentSize"]["height"]

    def shot(self, name):
        """Full-page screenshots at phone and desktop width; checks nothing overflows 360 px."""
        os.makedirs(self.cfg["shots"], exist_ok=True)
        import base64
        for label, (w, h) in (("phone", PHONE), ("desktop", DESKTOP), ("narrow", (360, 740))):
            self.viewport(w, h)
            cw, ch = self.content_width()
            if cw > w + 0.5:
                self.fail("page %s is %.0f px wide at a %d px viewport" % (name, cw, w))
            if label == "narrow":
                continue
            png = self.d.execute_cdp_cmd("Page.captureScreenshot", {
                "format": "png", "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": w, "height": max(h, ch), "scale": 1}})
            path = os.path.join(self.cfg["shots"], "%s-%s.png" % (name, label))
            with open(path, "wb") as f:
                f.write(base64.b64decode(png["data"]))
        self.viewport(*PHONE)

    def tap_targets(self, selector):
        """Every element matching `selector` is at least 44 px high (JS-enabled runs only:
        the size comes from the browser's layout through WebDriver)."""
        if not self.js:
            return
        for el in self.d.find_elements(By.CSS_SELECTOR, selector):
            if el.is_displayed() and el.size["height"] < 44:
                self.fail("tap target %r is %s px high" % (el.text, el.size["height"]))

    def login(self, name, otp):
        u = self.cfg["users"][name]
        self.go("/login")
        self.fill("user", name)
        self.fill("password", u["password"])
        self.fill("otp", otp.code())
        self.submit("/login")
        self.expect("Signed in as " + name)

    def session_cookie(self):
        for c in self.d.get_cookies():
            if c["name"] in ("breakglass", "__Host-breakglass"):
                return c
        return None

    def request(self, otp, resource, reason, ticket, duration=""):
        self.go("/request")
        self.d.find_element(
            By.CSS_SELECTOR, "input[name=resource][value='%s']" % resource).click()
        self.fill("reason", reason)
        self.fill("ticket", ticket)
        self.fill("duration", duration)
        self.fill("otp", otp.code() if otp else "")
        self.submit("/request")

    def grant_id(self):
        return self.d.find_element(By.CSS_SELECTOR, ".facts code").text


def otps(cfg):
    return {n: Otp(u["secret"], u["last_step"]) for n, u in cfg["users"].items()}


def glass(cfg):
    """TOTP login → break glass (a refusal first) → grant page with the credential, once."""
    o = otps(cfg)
    b = Browser(cfg, "alice")
    out = {}
    try:
        b.go("/login")
        b.shot("login")
        b.login("alice", o["alice"])
        b.shot("home")
        b.go("/request")
        b.expect("ticket matching ^INC-[0-9]+$")
        b.expect("reason of at least 15 characters")
        out["request_page"] = b.text()
        b.tap_targets("button, .choice, nav a")
        b.shot("request")
        # A refusal is shown on the form, the typed values kept.
        b.request(o["alice"], "prod-db", cfg["reason"], "nope")
        b.expect("ticket")
        out["refusal"] = b.d.find_element(By.CSS_SELECTOR, ".problem").text
        if b.d.find_element(By.NAME, "reason").get_attribute("value") != cfg["reason"]:
            b.fail("the reason typed was not kept after the refusal")
        b.shot("request-refused")
        b.request(o["alice"], "prod-db", cfg["reason"], "INC-4711", "45m")
        b.expect("Shown this once")
        out["grant"] = b.grant_id()
        out["page"] = b.text()
        out["expires"] = b.d.find_element(By.CSS_SELECTOR, ".expiry strong").text
        out["bold_elements_in_reason"] = len(b.d.find_elements(By.CSS_SELECTOR, ".facts b"))
        # No script but our own countdown (a file of ours: the CSP allows nothing inline).
        out["scripts"] = len([s for s in b.d.find_elements(By.TAG_NAME, "script")
                              if not (s.get_attribute("src") or "").endswith("/static/countdown.js")])
        if b.js:
            out["pwned"] = b.d.execute_script("return window.__pwned === 1")
            # The countdown ticks (the server's clock: the page carries it).
            out["left_1"] = b.d.find_element(By.ID, "left").text
            time.sleep(2.2)
            out["left_2"] = b.d.find_element(By.ID, "left").text
        b.tap_targets("button")
        b.shot("grant-credential")
        # The grant page again: no credential any more.
        b.go("/grants/" + out["grant"])
        out["page_again"] = b.text()
        b.shot("grant")
        # Extend by 15 minutes with a fresh code.
        b.fill("by", "15m")
        b.fill("otp", o["alice"].code())
        b.submit("/grants/%s/extend" % out["grant"])
        out["expires_after_extend"] = b.d.find_element(By.CSS_SELECTOR, ".expiry strong").text
        # Revoke with a reason.
        b.fill("reason", "done, fixed")
        b.submit("/grants/%s/revoke" % out["grant"])
        b.expect("revoked")
        out["after_revoke"] = b.text()
        b.shot("grant-revoked")
        b.go("/")
        out["home"] = b.text()
        b.shot("home-grants")
        # A form on another site (here a data: page) posting to breakglass: refused.
        action = b.url + "/request"
        b.d.get("data:text/html,<form method=post action='%s'>"
                "<input name=resource value=prod-db><input name=reason value='from another site'>"
                "<input name=ticket value=INC-1><button type=submit>go</button></form>" % action)
        b.submit(action)
        b.expect("not sent from this site")
        out["cross_site_page"] = b.text()
        b.shot("refused-cross-site")
        # Sign out: the session is deleted.
        b.go("/")
        out["cookie"] = b.session_cookie()
        b.submit("/logout")
        b.go("/")
        out["after_logout_url"] = b.d.current_url
    finally:
        b.close()
    return out


def approve(cfg):
    """alice asks for a quorum resource; bob approves it with a fresh code; alice picks up
    her credential once. With js=false the same in a browser without JavaScript."""
    o = otps(cfg)
    tag = "" if cfg.get("js", True) else "nojs-"
    out = {}
    a = Browser(cfg, "alice")
    b = Browser(cfg, "bob")
    try:
        a.login("alice", o["alice"])
        # Is JavaScript really on/off? A page script runs or not (WebDriver's own may).
        a.d.get("data:text/html,<p id=p>off</p><script>document.getElementById('p').textContent='on'</script>")
        out["page_script_ran"] = a.d.find_element(By.ID, "p").text == "on"
        a.request(o["alice"], "bastion", cfg["reason"], "INC-42")
        a.expect("pending")
        a.expect("Waiting for 1 more approval(s) from security")
        gid = a.grant_id()
        out["grant"] = gid
        a.shot(tag + "grant-pending")
        b.login("bob", o["bob"])
        b.expect("1 request waiting for approval")
        b.go("/approvals")
        b.expect("bastion")
        out["queue"] = b.text()
        b.shot(tag + "approvals")
        b.d.find_element(By.CSS_SELECTOR, "a[href='/grants/%s']" % gid).click()
        b.expect("Authenticator code for this approval")
        b.tap_targets("button")
        b.shot(tag + "approve")
        b.fill("otp", o["bob"].code())
        b.submit("/grants/%s/approve" % gid)
        b.expect("active")
        b.expect("Approved by")
        out["approved_page"] = b.text()
        b.shot(tag + "approved")
        a.go("/grants/" + gid)
        a.expect("Show my credential")
        a.submit("/grants/%s/credential" % gid)
        a.expect("Shown this once")
        out["pickup"] = a.text()
        a.shot(tag + "pickup")
        a.go("/grants/" + gid)
        out["after_pickup"] = a.text()
    finally:
        a.close()
        b.close()
    return out


def self_approve(cfg):
    """carol (oncall and security) asks, then tries to approve her own request; bob denies it."""
    o = otps(cfg)
    c = Browser(cfg, "carol")
    out = {}
    try:
        c.login("carol", o["carol"])
        c.request(o["carol"], "bastion", cfg["reason"], "INC-7")
        gid = c.grant_id()
        out["grant"] = gid
        c.fill("otp", o["carol"].code())
        c.submit("/grants/%s/approve" % gid)
        out["refusal"] = c.d.find_element(By.CSS_SELECTOR, ".problem").text
        out["page"] = c.text()
        c.shot("self-approval-refused")
    finally:
        c.close()
    # Another approver denies it, with a reason and a fresh code for the denial.
    b = Browser(cfg, "bob")
    try:
        b.login("bob", o["bob"])
        b.go("/grants/" + gid)
        b.fill("reason", cfg["deny_reason"])
        b.d.find_element(By.ID, "deny-otp").send_keys(o["bob"].code())
        b.submit("/grants/%s/deny" % gid)
        b.expect("denied")
        out["denied_page"] = b.text()
        out["italic_elements"] = len(b.d.find_elements(By.CSS_SELECTOR, ".facts i"))
        b.shot("denied")
    finally:
        b.close()
    return out


def secret(cfg):
    """alice breaks glass on a sealed secret and has it released on the grant page."""
    o = otps(cfg)
    b = Browser(cfg, "alice")
    try:
        b.login("alice", o["alice"])
        b.request(o["alice"], "vault-root", cfg["reason"], "")
        b.expect("Show the secret")
        out = {"before": b.text()}
        b.submit("/grants/%s/secret" % b.grant_id())
        out["page"] = b.text()
        b.shot("secret-released")
        return out
    finally:
        b.close()


def ssh(cfg):
    """An SSH resource: without a key, refused on the form; with the key pasted, a certificate."""
    o = otps(cfg)
    b = Browser(cfg, "alice")
    try:
        b.login("alice", o["alice"])
        b.request(o["alice"], "jump", cfg["reason"], "")
        out = {"refusal": b.d.find_element(By.CSS_SELECTOR, ".problem").text}
        b.fill("ssh_public_key", cfg["ssh_key"])
        b.fill("otp", o["alice"].code())
        b.submit("/request")
        b.expect("Shown this once")
        out["page"] = b.text()
        b.shot("grant-ssh")
        return out
    finally:
        b.close()


def tls_login(cfg):
    """Over HTTPS: sign in; the session cookie is `__Host-` prefixed and Secure."""
    o = otps(cfg)
    b = Browser(cfg, "alice")
    try:
        b.login("alice", o["alice"])
        b.go("/request")
        b.expect("Break glass")
        return {"cookie": b.session_cookie(), "url": b.d.current_url}
    finally:
        b.close()


def dashboard(cfg):
    """alice breaks glass; sam (security) sees it on the dashboard with its time left and
    revokes it there with a reason; alice is told the dashboard is not for her."""
    o = otps(cfg)
    out = {}
    a = Browser(cfg, "alice")
    s = Browser(cfg, "sam")
    try:
        a.login("alice", o["alice"])
        a.request(o["alice"], "prod-db", cfg["reason"], "INC-77")
        a.expect("active")
        gid = a.grant_id()
        out["grant"] = gid
        a.go("/dashboard")
        a.expect("The dashboard is for the security team")
        out["refused"] = a.text()
        s.login("sam", o["sam"])
        s.go("/dashboard")
        s.expect("Security dashboard")
        s.expect("left")
        out["page"] = s.text()
        out["pwned"] = s.d.execute_script("return window.__pwned === 1")
        out["bold_elements_in_reason"] = len(s.d.find_elements(By.CSS_SELECTOR, ".live .reason b"))
        s.tap_targets("button, nav a, summary")
        s.shot("dashboard")
        s.fill("reason", "not needed any more, checked with alice")
        s.submit("/grants/%s/revoke" % gid)
        s.expect("revoked")
        s.go("/dashboard")
        out["after"] = s.text()
        s.shot("dashboard-after")
    finally:
        a.close()
        s.close()
    return out


def practice(cfg):
    """A people drill is open on prod-db and a glass case is sealed (set up by the Rust test):
    alice sees the game day announced, breaks glass, and her grant is marked TRAINING; sam's
    dashboard lists the drill, the case and the marked grant."""
    o = otps(cfg)
    out = {}
    a = Browser(cfg, "alice")
    s = Browser(cfg, "sam")
    try:
        a.login("alice", o["alice"])
        a.go("/")
        a.expect("people drill")
        out["home"] = a.text()
        a.shot("home-drill")
        a.go("/request")
        out["form"] = a.text()
        a.request(o["alice"], "prod-db", "game day: orders table locked again", "INC-78")
        a.expect("active")
        out["grant"] = a.grant_id()
        out["grant_page"] = a.text()
        a.shot("grant-training")
        a.go("/")
        out["home_after"] = a.text()
        s.login("sam", o["sam"])
        s.go("/dashboard")
        s.expect("Offline glass cases")
        out["dashboard"] = s.text()
        out["live_marks"] = len(s.d.find_elements(By.CSS_SELECTOR, ".live .mark"))
        out["pwned"] = (a.d.execute_script("return window.__pwned === 1")
                        or s.d.execute_script("return window.__pwned === 1"))
        out["bold_in_reason"] = len(s.d.find_elements(By.CSS_SELECTOR, "section .text b"))
        s.tap_targets("button, nav a, summary")
        s.shot("dashboard-practice")
    finally:
        a.close()
        s.close()
    return out


def review(cfg):
    """A grant of alice's has ended; alice may not review it (the reason is shown); sam reads
    the incident report inline, downloads it, and records a verdict with a fresh code."""
    o = otps(cfg)
    out = {}
    gid = cfg["grant"]
    a = Browser(cfg, "alice")
    s = Browser(cfg, "sam")
    try:
        a.login("alice", o["alice"])
        a.go("/reviews/" + gid)
        a.d.find_element(By.CSS_SELECTOR, "input[value=appropriate]").click()
        a.fill("notes", "looks fine to me")
        a.fill("otp", o["alice"].code())
        a.submit("/reviews/" + gid)
        out["self_review"] = a.d.find_element(By.CSS_SELECTOR, ".problem").text
        s.login("sam", o["sam"])
        s.go("/reviews")
        s.expect(gid)
        out["list"] = s.text()
        s.shot("reviews")
        s.d.find_element(By.CSS_SELECTOR, "a[href='/reviews/%s']" % gid).click()
        s.expect("Incident report")
        out["page"] = s.text()
        out["pwned"] = s.d.execute_script("return window.__pwned === 1")
        out["bold_elements"] = len(s.d.find_elements(By.CSS_SELECTOR, "pre.report b"))
        s.tap_targets("button, .choice, nav a, .downloads a")
        s.shot("review")
        s.d.find_element(By.CSS_SELECTOR, "input[value=appropriate]").click()
        s.fill("notes", "checked the session log <i>and</i> the ticket")
        s.fill("otp", o["sam"].code())
        s.submit("/reviews/" + gid)
        out["after"] = s.text()
        s.shot("reviewed")
    finally:
        a.close()
        s.close()
    return out


def main():
    cfg = json.load(sys.stdin)
    fn = {"glass": glass, "approve": approve, "self": self_approve,
          "tls_login": tls_login, "secret": secret,
          "ssh": ssh, "dashboard": dashboard, "practice": practice,
          "review": review}[cfg["scenario"]]
    print(json.dumps(fn(cfg)))


if __name__ == "__main__":
    main()
