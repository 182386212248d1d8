#!/usr/bin/env python3
"""Passkeys, recovery codes and the account page in a real browser, for
crates/cli/tests/it/web.rs (`passkeys` tests). Same input/output as web_drive.py, whose Browser
it reuses; each browser gets Chrome's virtual WebAuthn authenticator (CTAP2, internal, resident
keys, user verification), so every passkey ceremony is the browser's own.

The attacks use the page's own script path (fetch + navigator.credentials) to obtain a real
assertion, then send it where it does not belong.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.virtual_authenticator import (  # noqa: E402
    Protocol, Transport, VirtualAuthenticatorOptions)
from selenium.common.exceptions import TimeoutException, WebDriverException  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from web_drive import Browser, Otp, otps  # noqa: E402


def with_authenticator(b):
    o = VirtualAuthenticatorOptions()
    o.protocol = Protocol.CTAP2
    o.transport = Transport.INTERNAL
    o.has_resident_key = True
    o.has_user_verification = True
    o.is_user_verified = True
    o.is_user_consenting = True
    b.d.add_virtual_authenticator(o)
    return b


def wait_text(b, needle, timeout=20):
    def seen(_):
        try:
            return needle.lower() in b.text().lower()
        except WebDriverException:  # the page is being replaced
            return False
    try:
        WebDriverWait(b.d, timeout).until(seen)
    except TimeoutException:
        b.fail("expected %r on the page" % needle)


def tap(b, form_id):
    """Taps the passkey button of form `form_id` (the script takes it from there)."""
    btn = b.d.find_element(By.CSS_SELECTOR, "#%s button[data-passkey-button]" % form_id)
    if not btn.is_displayed():
        b.fail("the passkey button of #%s is not shown" % form_id)
    btn.click()


def add_passkey(b, otp, name):
    b.go("/account")
    el = b.d.find_element(By.ID, "passkey-name")
    el.clear()
    el.send_keys(name)
    el = b.d.find_element(By.ID, "passkey-otp")
    el.clear()
    el.send_keys(otp)
    tap(b, "add-passkey")
    wait_text(b, "added")


# A real assertion for (purpose, subject), obtained the way passkey.js does, not sent anywhere.
ASSERT_JS = r"""
var done = arguments[arguments.length - 1];
var url = arguments[0], fields = arguments[1];
function toBytes(s){s=s.replace(/-/g,'+').replace(/_/g,'/');while(s.length%4)s+='=';
  var b=atob(s),o=new Uint8Array(b.length);for(var i=0;i<b.length;i++)o[i]=b.charCodeAt(i);return o.buffer;}
function b64(buf){var a=new Uint8Array(buf),s='';for(var i=0;i<a.length;i++)s+=String.fromCharCode(a[i]);
  return btoa(s).replace(/\+/g,'-').replace(/\//g,'_').replace(/=+$/,'');}
fetch(url,{method:'POST',credentials:'same-origin',body:new URLSearchParams(fields)})
 .then(function(r){return r.json().then(function(j){if(!r.ok)throw new Error(j.detail);return j;});})
 .then(function(j){var pk=j.options.publicKey;pk.challenge=toBytes(pk.challenge);
   (pk.allowCredentials||[]).forEach(function(c){c.id=toBytes(c.id);});
   return navigator.credentials.get({publicKey:pk}).then(function(c){var r=c.response;
     done({ceremony:j.ceremony,response:JSON.stringify({id:c.id,rawId:b64(c.rawId),type:c.type,extensions:{},
       response:{authenticatorData:b64(r.authenticatorData),clientDataJSON:b64(r.clientDataJSON),
       signature:b64(r.signature),userHandle:r.userHandle?b64(r.userHandle):null}})});});})
 .catch(function(e){done({error:String(e && e.message || e)});});
"""

# Posts a form body from the page (same origin, the session's cookie): status and text.
POST_JS = r"""
var done = arguments[arguments.length - 1];
fetch(arguments[0],{method:'POST',credentials:'same-origin',body:new URLSearchParams(arguments[1])})
 .then(function(r){return r.text().then(function(t){done({status:r.status,url:r.url,text:t});});})
 .catch(function(e){done({status:0,text:String(e)});});
"""


def assertion(b, url, fields):
    b.d.set_script_timeout(30)
    return b.d.execute_async_script(ASSERT_JS, url, fields)


def post(b, url, fields):
    b.d.set_script_timeout(30)
    return b.d.execute_async_script(POST_JS, url, fields)


def csrf(b):
    return b.d.find_element(By.CSS_SELECTOR, "input[name=csrf]").get_attribute("value")


def logout(b):
    b.go("/")
    b.d.find_element(By.CSS_SELECTOR, "form[action='/logout'] button").click()
    wait_text(b, "Sign in")


def passkeys(cfg):
    """alice enrols a passkey, makes recovery codes, signs in with the passkey and breaks glass
    with it; bob enrols one and approves with it on a phone; alice revokes; then the attacks."""
    o = otps(cfg)
    out = {}
    # carol has no second factor yet: the password alone signs her in, to the account page,
    # where she sets up her authenticator app from the QR code.
    c = Browser(cfg, "carol")
    try:
        c.go("/login")
        c.fill("user", "carol")
        c.fill("password", cfg["users"]["carol"]["password"])
        c.submit("/login")
        c.expect("Your account")
        c.expect("Not set up yet")
        c.submit("/account/totp")
        c.expect("Scan this code")
        if not c.d.find_elements(By.CSS_SELECTOR, ".qr svg path"):
            c.fail("no QR code")
        c.shot("account-totp")
        secret = c.d.find_element(By.ID, "totp-secret").text
        el = c.d.find_element(By.ID, "confirm-otp")
        el.send_keys(Otp(secret, 0).code())
        c.submit("/account/totp/confirm")
        c.expect("Your authenticator app is set up")
        out["carol_secret_len"] = len(secret)
        # From now on carol needs a code to sign in.
        logout(c)
        c.fill("user", "carol")
        c.fill("password", cfg["users"]["carol"]["password"])
        c.submit("/login")
        out["carol_without_code"] = c.text()
    finally:
        c.close()

    a = with_authenticator(Browser(cfg, "alice"))
    b = with_authenticator(Browser(cfg, "bob"))
    try:
        a.login("alice", o["alice"])
        a.go("/account")
        a.expect("Passkeys")
        a.tap_targets("button")
        a.shot("account")
        add_passkey(a, o["alice"].code(), "alice phone")
        a.expect("alice phone")
        a.expect("last used never")
        out["account"] = a.text()
        a.shot("account-passkey")
        # Recovery codes with a fresh code: shown once.
        el = a.d.find_element(By.ID, "recovery-otp")
        el.send_keys(o["alice"].code())
        a.submit("/account/recovery")
        a.expect("shown only now")
        codes = [e.text for e in a.d.find_elements(By.CSS_SELECTOR, "#recovery-codes code")]
        out["codes"] = codes
        out["remaining_after_new"] = a.d.find_element(By.ID, "recovery-remaining").text
        a.shot("account-codes")
        a.go("/account")
        out["account_again"] = a.text()

        # Sign in with the passkey alone.
        logout(a)
        a.go("/login")
        a.d.find_element(By.ID, "passkey-user").send_keys("alice")
        a.shot("login-passkey")
        tap(a, "passkey-login")
        wait_text(a, "Signed in as alice")

        # Break glass with a passkey tap (bastion needs security's approval).
        a.go("/request")
        a.d.find_element(By.CSS_SELECTOR, "input[name=resource][value='bastion']").click()
        a.fill("reason", cfg["reason"])
        a.fill("ticket", "INC-77")
        a.shot("request-passkey")
        tap(a, "request-form")
        wait_text(a, "Waiting for 1 more approval")
        gid = a.grant_id()
        out["grant"] = gid

        # bob: a passkey of his own, then approves on the phone with it.
        b.login("bob", o["bob"])
        add_passkey(b, o["bob"].code(), "bob phone")
        # Attack: an assertion bob's passkey made for DENYING this grant is sent to APPROVE it.
        b.go("/grants/" + gid)
        deny = assertion(b, "/webauthn/challenge",
                         {"csrf": csrf(b), "purpose": "deny", "subject": gid})
        if "error" in deny:
            b.fail("no deny assertion: %s" % deny["error"])
        wrong = post(b, "/grants/%s/approve" % gid, {
            "csrf": csrf(b), "passkey_ceremony": deny["ceremony"],
            "passkey_response": deny["response"]})
        out["other_action"] = {"status": wrong["status"], "text": wrong["text"]}
        b.go("/grants/" + gid)
        b.expect("pending")
        b.expect("Approve with a passkey")
        b.tap_targets("button")
        b.shot("approve-passkey")
        tap(b, "approve-form")
        wait_text(b, "Approved by")
        b.expect("active")
        b.shot("approved-passkey")

        # alice revokes.
        a.go("/grants/" + gid)
        a.expect("active")
        a.submit("/grants/%s/revoke" % gid)
        a.expect("revoked")
        out["revoked"] = True

        # Attack: replay. One real login assertion, sent twice.
        logout(a)
        a.go("/login")
        one = assertion(a, "/login/passkey/challenge", {"user": "alice"})
        if "error" in one:
            a.fail("no login assertion: %s" % one["error"])
        first = post(a, "/login/passkey", {"user": "alice", "passkey_ceremony": one["ceremony"],
                                           "passkey_response": one["response"]})
        again = post(a, "/login/passkey", {"user": "alice", "passkey_ceremony": one["ceremony"],
                                           "passkey_response": one["response"]})
        out["replay"] = {"first": first["status"], "first_url": first["url"],
                         "again": again["status"], "again_text": again["text"]}
        logout(a)
        # Attack: alice's own assertion (a ceremony for alice) offered as bob's login.
        a.go("/login")
        mine = assertion(a, "/login/passkey/challenge", {"user": "alice"})
        as_bob = post(a, "/login/passkey", {"user": "bob", "passkey_ceremony": mine["ceremony"],
                                            "passkey_response": mine["response"]})
        out["as_bob"] = {"status": as_bob["status"], "text": as_bob["text"]}

        # Recovery code sign-in, then the same code again.
        a.go("/login")
        a.fill("user", "alice")
        a.fill("password", cfg["users"]["alice"]["password"])
        a.fill("otp", codes[0].lower())
        a.submit("/login")
        a.expect("Signed in as alice")
        a.go("/account")
        out["remaining_after_use"] = a.d.find_element(By.ID, "recovery-remaining").text
        logout(a)
        a.go("/login")
        a.fill("user", "alice")
        a.fill("password", cfg["users"]["alice"]["password"])
        a.fill("otp", codes[0])
        a.submit("/login")
        out["reuse"] = a.text()
        a.shot("login-recovery-reused")

        # Attack: a cloned authenticator. The stored counter is set above anything the
        # authenticator will send: the next passkey sign-in is refused (and alerted).
        import sqlite3
        db = sqlite3.connect(cfg["db"], timeout=30)
        row = db.execute("SELECT passkey_json FROM passkeys WHERE user_name='alice'").fetchone()
        pk = json.loads(row[0])
        cred = pk.get("cred", pk)
        if "counter" not in cred:
            a.fail("no counter in the stored passkey: %s" % sorted(cred))
        out["counter_before"] = cred["counter"]
        cred["counter"] = 4000000000
        db.execute("UPDATE passkeys SET passkey_json=? WHERE user_name='alice'", (json.dumps(pk),))
        db.commit()
        db.close()
        a.go("/login")
        cloned = assertion(a, "/login/passkey/challenge", {"user": "alice"})
        res = post(a, "/login/passkey", {"user": "alice", "passkey_ceremony": cloned["ceremony"],
                                         "passkey_response": cloned["response"]})
        out["cloned"] = {"status": res["status"], "text": res["text"]}
    finally:
        a.close()
        b.close()
    return out


def main():
    cfg = json.load(sys.stdin)
    fn = {"passkeys": passkeys}[cfg["scenario"]]
    print(json.dumps(fn(cfg)))


if __name__ == "__main__":
    main()
