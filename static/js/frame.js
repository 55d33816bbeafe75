/*
 * b24app frame bridge: the app's side of the Bitrix24 portal <-> iframe postMessage protocol
 * (spec §6.2), the same protocol BX24.js and @bitrix24/b24jssdk speak, so the app behaves the
 * same in a real portal and in the sandbox.
 *
 *   frame -> parent: "<command>:<paramsJSON>:<callbackId>:<APP_SID>" (empty parts left out),
 *                    posted to the portal's origin only;
 *   parent -> frame: "<callbackId>:<resultJSON>", accepted only from the portal's origin.
 *
 * It also keeps the frame token current: every response of ours carries a renewed token in the
 * X-Frame-Token header; it is copied into <body hx-headers> and into hidden form fields.
 */
(function () {
  "use strict";
  var body = document.body;
  var nameParts = (window.name || "").split("|");
  var origin = body.dataset.portalOrigin ||
    (nameParts.length === 3 ? (nameParts[1] === "1" ? "https://" : "http://") + nameParts[0] : "");
  var appSid = body.dataset.appSid || (nameParts.length === 3 ? nameParts[2] : "");
  var pending = {};
  var counter = 0;
  var inFrame = window.parent && window.parent !== window;

  function send(command, params, timeoutMs) {
    return new Promise(function (resolve, reject) {
      if (!inFrame || !origin) { reject(new Error("not inside a Bitrix24 page")); return; }
      counter += 1;
      var id = "b24app" + Date.now().toString(36) + counter;
      pending[id] = resolve;
      var parts = [params ? JSON.stringify(params) : "", id, appSid].filter(Boolean);
      window.parent.postMessage(command + ":" + parts.join(":"), origin);
      if (timeoutMs) {
        setTimeout(function () {
          if (pending[id]) { delete pending[id]; resolve(null); }
        }, timeoutMs);
      }
    });
  }

  window.addEventListener("message", function (event) {
    if (event.origin !== origin || typeof event.data !== "string") { return; }
    var cut = event.data.indexOf(":");
    var id = cut < 0 ? event.data : event.data.slice(0, cut);
    var raw = cut < 0 ? "" : event.data.slice(cut + 1);
    var handler = pending[id];
    if (!handler) { return; }
    delete pending[id];
    var value = null;
    try { value = raw ? JSON.parse(raw) : null; } catch (e) { value = raw; }
    handler(value);
  });

  function currentToken() {
    try {
      return JSON.parse(body.getAttribute("hx-headers") || "{}")["X-Frame-Token"] || "";
    } catch (e) {
      return "";
    }
  }

  function setToken(token) {
    if (!token) { return; }
    var headers = {};
    try { headers = JSON.parse(body.getAttribute("hx-headers") || "{}"); } catch (e) { headers = {}; }
    headers["X-Frame-Token"] = token;
    body.setAttribute("hx-headers", JSON.stringify(headers));
    document.querySelectorAll("input[name=frame_token]").forEach(function (input) {
      input.value = token;
    });
  }

  // The height of what is on the page. Not documentElement.scrollHeight: that is never less than
  // the frame's current height, so the frame could grow but never shrink back. body.scrollHeight
  // also counts what overflows the body (an open dropdown near the bottom).
  function contentHeight() {
    var box = document.documentElement.getBoundingClientRect();
    return Math.ceil(Math.max(box.height, body.scrollHeight));
  }

  var lastHeight = 0;
  function fitWindow() {
    var height = contentHeight();
    if (Math.abs(height - lastHeight) < 2) { return Promise.resolve(null); }
    lastHeight = height;
    return send("resizeWindow", { width: "100%", height: height }, 900);
  }

  // An expired frame token (401 + X-Frame-Expired): get a fresh AUTH_ID for this user from the
  // portal (refreshAuth), trade it at the entry URL for a new frame token, then repeat the
  // request. Nothing on the page is reloaded, so a draft being typed is kept.
  var reentering = null;
  function reenter() {
    if (reentering) { return reentering; }
    reentering = window.B24Frame.refreshAuth().then(function (auth) {
      if (!auth || !auth.AUTH_ID) { throw new Error("no fresh auth from the portal"); }
      var form = new FormData();
      form.append("AUTH_ID", auth.AUTH_ID);
      form.append("member_id", body.dataset.memberId || "");
      var protocol = origin.indexOf("https://") === 0 ? "1" : "0";
      var url = (body.dataset.entryUrl || "/b24/app/") + "?DOMAIN=" +
        encodeURIComponent(body.dataset.domain || "") + "&PROTOCOL=" + protocol;
      return fetch(url, { method: "POST", body: form, headers: { "X-Frame-Reenter": "1" } });
    }).then(function (response) {
      if (!response.ok) { throw new Error("re-entry refused"); }
      return response.json();
    }).then(function (data) {
      setToken(data.frame_token);
      return data.frame_token;
    }).finally(function () { reentering = null; });
    return reentering;
  }

  // Repeat a request that met an expired token, as htmx would have sent it: same element, verb,
  // path and triggering event (so hx-target, hx-swap, hx-indicator and the form values apply),
  // plus the submit button that sent a form. Its hx-confirm question was answered already. The
  // X-Frame-Repeat header marks it, so a repeat refused again ends the session instead of looping.
  function repeat(detail) {
    var elt = detail.elt;
    var config = detail.requestConfig || {};
    var trigger = config.triggeringEvent;
    var values = {};
    if (trigger && trigger.submitter && trigger.submitter.name) {
      values[trigger.submitter.name] = trigger.submitter.value;
    }
    function confirmed(event) {
      if (event.detail.elt !== elt) { return; }
      elt.removeEventListener("htmx:confirm", confirmed);
      if (event.detail.question) {
        event.preventDefault();
        event.detail.issueRequest(true);
      }
    }
    elt.addEventListener("htmx:confirm", confirmed);
    return htmx.ajax(config.verb || "get", config.path, {
      source: elt, event: trigger, values: values, headers: { "X-Frame-Repeat": "1" },
    }).finally(function () { elt.removeEventListener("htmx:confirm", confirmed); });
  }

  function sessionLost(elt) {
    (elt && document.body.contains(elt) ? elt : body).dispatchEvent(
      new CustomEvent("b24:session-lost", { bubbles: true })
    );
  }

  document.addEventListener("htmx:responseError", function (event) {
    var xhr = event.detail && event.detail.xhr;
    var elt = event.detail && event.detail.elt;
    if (!xhr || xhr.status !== 401 || xhr.getResponseHeader("X-Frame-Expired") !== "1") { return; }
    var headers = (event.detail.requestConfig && event.detail.requestConfig.headers) || {};
    // The repeat itself was refused: a fresh token did not help, so do not loop.
    if (!elt || headers["X-Frame-Repeat"]) { sessionLost(elt); return; }
    // A request sent before another one's re-entry finished only needs the new token.
    var sent = headers["X-Frame-Token"];
    var renewed = sent && sent !== currentToken() ? Promise.resolve() : reenter();
    // Only a failed re-entry ends the session. The repeat may itself be cut short (a newer
    // preview replaces it, its element was swapped away); its own errors show as usual.
    renewed.then(
      function () { return repeat(event.detail).catch(function () {}); },
      function () { sessionLost(elt); }
    );
  });

  document.addEventListener("htmx:afterRequest", function (event) {
    var xhr = event.detail && event.detail.xhr;
    if (xhr) { setToken(xhr.getResponseHeader("X-Frame-Token")); }
  });
  document.addEventListener("htmx:afterSettle", function () { fitWindow(); });
  if (window.ResizeObserver) {
    new ResizeObserver(function () { fitWindow(); }).observe(body);
  }

  window.B24Frame = {
    send: send,
    setToken: setToken,
    getInitData: function () { return send("getInitData", null, 3000); },
    installFinish: function () { return send("setInstallFinish", null, 900); },
    fitWindow: fitWindow,
    resizeWindow: function (w, h) { return send("resizeWindow", { width: w, height: h }, 900); },
    refreshAuth: function () { return send("refreshAuth", null, 10000); },
    selectUser: function () { return send("selectUser", { mult: false }); },
    selectUsers: function () { return send("selectUser", { mult: true }); },
    // Bitrix24 reloads the app page: a new entry POST with fresh auth (a frame cannot re-POST).
    reloadWindow: function () { return send("reloadWindow", null, 2000); },
  };

  document.addEventListener("DOMContentLoaded", function () {
    if (body.dataset.installFinish === "1") {
      window.B24Frame.installFinish();
    }
    fitWindow();
  });
})();
