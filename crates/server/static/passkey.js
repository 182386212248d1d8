// Passkey ceremonies for the web UI (the only other script; every page works without it, with
// a code from the authenticator app instead). A form marked data-passkey-start="URL" gets its
// passkey button shown; a tap asks the server for a challenge (the form's csrf, purpose,
// subject and user fields are sent), lets the browser answer it, puts the answer in the form's
// passkey_ceremony / passkey_response fields and sends the form. data-passkey-mode="create"
// registers a new passkey instead of proving one.
(function () {
  "use strict";
  if (!window.PublicKeyCredential || !navigator.credentials) return;

  function toBytes(b64url) {
    var b64 = b64url.replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) b64 += "=";
    var bin = atob(b64);
    var out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out.buffer;
  }
  function toB64url(buf) {
    var bytes = new Uint8Array(buf);
    var bin = "";
    for (var i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]);
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function field(form, name) {
    var checked = form.querySelector("input[name='" + name + "']:checked");
    if (checked) return checked.value;
    var el = form.elements.namedItem(name);
    return el && el.value !== undefined ? el.value : "";
  }
  function say(form, text) {
    var box = form.querySelector("[data-passkey-error]");
    if (box) {
      box.textContent = text;
      box.hidden = !text;
    }
  }

  function creationOptions(o) {
    var pk = o.publicKey;
    pk.challenge = toBytes(pk.challenge);
    pk.user.id = toBytes(pk.user.id);
    (pk.excludeCredentials || []).forEach(function (c) { c.id = toBytes(c.id); });
    return { publicKey: pk };
  }
  function requestOptions(o) {
    var pk = o.publicKey;
    pk.challenge = toBytes(pk.challenge);
    (pk.allowCredentials || []).forEach(function (c) { c.id = toBytes(c.id); });
    return { publicKey: pk };
  }
  function created(c) {
    return {
      id: c.id, rawId: toB64url(c.rawId), type: c.type, extensions: {},
      response: {
        attestationObject: toB64url(c.response.attestationObject),
        clientDataJSON: toB64url(c.response.clientDataJSON),
        transports: c.response.getTransports ? c.response.getTransports() : []
      }
    };
  }
  function asserted(c) {
    var r = c.response;
    return {
      id: c.id, rawId: toB64url(c.rawId), type: c.type, extensions: {},
      response: {
        authenticatorData: toB64url(r.authenticatorData),
        clientDataJSON: toB64url(r.clientDataJSON),
        signature: toB64url(r.signature),
        userHandle: r.userHandle ? toB64url(r.userHandle) : null
      }
    };
  }

  // The form's other required fields are filled in before the tap (the code is not needed).
  function missing(form) {
    var empty = Array.prototype.filter.call(form.querySelectorAll("[required]"), function (el) {
      return el.name !== "otp" && !el.value.trim();
    });
    if (!empty.length) return false;
    var label = form.querySelector("label[for='" + empty[0].id + "']");
    say(form, "Fill in " + (label ? label.textContent.trim() : empty[0].name) + " first.");
    empty[0].focus();
    return true;
  }

  function start(form, button) {
    if (missing(form)) return;
    var create = form.getAttribute("data-passkey-mode") === "create";
    var body = new URLSearchParams();
    ["csrf", "user", "name", "otp"].forEach(function (n) { body.append(n, field(form, n)); });
    body.append("purpose", form.getAttribute("data-passkey-purpose") || "");
    var subjectField = form.getAttribute("data-passkey-subject-field");
    body.append("subject", subjectField ? field(form, subjectField) : (form.getAttribute("data-passkey-subject") || ""));
    button.disabled = true;
    say(form, "");
    fetch(form.getAttribute("data-passkey-start"), {
      method: "POST", credentials: "same-origin", body: body,
      headers: { "Accept": "application/json" }
    }).then(function (resp) {
      return resp.json().then(function (j) {
        if (!resp.ok) throw new Error((j.detail || "refused") + (j.hint ? " " + j.hint : ""));
        return j;
      });
    }).then(function (j) {
      form.elements.namedItem("passkey_ceremony").value = j.ceremony;
      return create
        ? navigator.credentials.create(creationOptions(j.options)).then(created)
        : navigator.credentials.get(requestOptions(j.options)).then(asserted);
    }).then(function (answer) {
      form.elements.namedItem("passkey_response").value = JSON.stringify(answer);
      Array.prototype.forEach.call(form.querySelectorAll("[required]"), function (el) {
        el.required = false;
      });
      if (create) form.setAttribute("action", form.getAttribute("data-passkey-finish"));
      form.submit();
    }).catch(function (e) {
      button.disabled = false;
      say(form, "Passkey: " + (e && e.message ? e.message : "cancelled") + ".");
    });
  }

  Array.prototype.forEach.call(document.querySelectorAll("form[data-passkey-start]"), function (form) {
    var button = form.querySelector("button[data-passkey-button]");
    if (!button) return;
    button.hidden = false;
    form.hidden = false;
    button.addEventListener("click", function () { start(form, button); });
  });
})();
