/*
 * b24app: every failed request is shown to the user, in their language, in the Bitrix24 look.
 *
 * htmx 2 swaps only 2xx responses. Here:
 *   - a 4xx answer that is an HTML fragment (a region the view rendered for this request, such as
 *     the campaigns refusal) is swapped into its target like a 200;
 *   - any other 4xx, every 5xx, a network failure and a timeout become a notice (a toast near the
 *     element the user used, since the frame is as tall as its content and its top may be far
 *     out of sight); nothing is swapped, so what was typed stays on the page;
 *   - `b24:session-lost` (frame.js: the frame token expired and the portal gave no fresh auth)
 *     becomes a notice that stays, with a button that has Bitrix24 reload the app.
 * A 401 with X-Frame-Expired is frame.js's: it re-enters and repeats the request.
 *
 * The texts are rendered by Django's i18n into data-* attributes of #b24-notices (base.html), so
 * there is nothing to translate here. A plain-text body of ours (frame refusals, the 413 size
 * limit) is shown as it is when it is in the page's language (htmx requests send Accept-Language).
 */
(function () {
  "use strict";
  var region = document.getElementById("b24-notices");
  if (!region || !window.htmx) { return; }
  var texts = region.dataset;
  var MAX_NOTICES = 3;

  function isExpiry(xhr) {
    return xhr.status === 401 && xhr.getResponseHeader("X-Frame-Expired") === "1";
  }

  function contentType(xhr) {
    return (xhr.getResponseHeader("Content-Type") || "").toLowerCase();
  }

  // A region rendered for htmx, not a whole page (Django's own error pages are whole documents).
  function isFragment(xhr) {
    if (contentType(xhr).indexOf("text/html") !== 0) { return false; }
    var head = String(xhr.responseText || "").slice(0, 512).trim().toLowerCase();
    return head !== "" && head.indexOf("<!doctype") !== 0 && head.indexOf("<html") !== 0;
  }

  // Our own short plain-text refusal, if it is in the page's language.
  function plainText(xhr) {
    if (contentType(xhr).indexOf("text/plain") !== 0) { return ""; }
    var language = (xhr.getResponseHeader("Content-Language") || "").toLowerCase();
    var page = (document.documentElement.lang || "").toLowerCase();
    if (language && page && language.split("-")[0] !== page.split("-")[0]) { return ""; }
    var text = String(xhr.responseText || "").trim();
    return text.length > 0 && text.length <= 300 ? text : "";
  }

  function textFor(status) {
    if (status === 403) { return texts.textForbidden; }
    if (status === 404) { return texts.textNotFound; }
    if (status === 413) { return texts.textTooLarge; }
    if (status === 429) { return texts.textBusy; }
    if (status >= 500) { return texts.textServer; }
    return texts.textRefused;
  }

  // Put the notices beside `near` (the element the user used), inside the frame's visible part.
  function place(near) {
    var top = 16;
    if (near && document.body.contains(near)) {
      var box = near.getBoundingClientRect();
      top = box.bottom + 8;
      var height = region.offsetHeight;
      if (top + height > window.innerHeight - 8) { top = Math.max(8, box.top - height - 8); }
    }
    region.style.top = Math.round(top) + "px";  // CSSOM, which the CSP allows
  }

  function close(notice) {
    if (notice.parentNode) { notice.parentNode.removeChild(notice); }
  }

  /**
   * Show a notice. options: {code, sticky, near, action: {label, run}}.
   * The same text shown again replaces the older notice instead of stacking up.
   */
  function notify(text, options) {
    options = options || {};
    Array.prototype.forEach.call(region.querySelectorAll("[data-notice]"), function (old) {
      if (old.dataset.notice === text) { close(old); }
    });
    var notice = document.createElement("div");
    notice.className = "b24-toast b24-toast-danger" + (options.sticky ? " b24-toast-sticky" : "");
    notice.setAttribute("role", "alert");
    notice.dataset.notice = text;
    var body = document.createElement("span");
    body.className = "b24-toast-body";
    var message = document.createElement("span");
    message.className = "b24-toast-text";
    message.textContent = text;
    body.appendChild(message);
    if (options.code) {
      var code = document.createElement("span");
      code.className = "b24-toast-code b24-mono";
      code.textContent = String(options.code);
      body.appendChild(document.createTextNode(" "));
      body.appendChild(code);
    }
    if (options.action) {
      var action = document.createElement("button");
      action.type = "button";
      action.className = "b24-toast-action";
      action.textContent = options.action.label;
      action.addEventListener("click", function () { options.action.run(notice); });
      body.appendChild(action);
    }
    notice.appendChild(body);
    var dismiss = document.createElement("button");
    dismiss.type = "button";
    dismiss.className = "b24-toast-close";
    dismiss.setAttribute("aria-label", texts.textClose || "Close");
    dismiss.addEventListener("click", function () { close(notice); });
    notice.appendChild(dismiss);
    if (!options.sticky) {
      // app.css fades a toast out after 6 s; take it out of the page once it is invisible.
      notice.addEventListener("animationend", function (event) {
        if (event.animationName === "b24-toast-out") { close(notice); }
      });
    }
    region.appendChild(notice);
    var notices = region.querySelectorAll("[data-notice]");
    for (var i = 0; i < notices.length - MAX_NOTICES; i += 1) { close(notices[i]); }
    place(options.near);
    return notice;
  }

  // 4xx fragments are meant for the page: swap them like a 200 (no htmx:responseError follows).
  document.addEventListener("htmx:beforeSwap", function (event) {
    var xhr = event.detail.xhr;
    if (!xhr || xhr.status < 400 || xhr.status >= 500 || isExpiry(xhr)) { return; }
    if (isFragment(xhr)) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });

  document.addEventListener("htmx:responseError", function (event) {
    var xhr = event.detail.xhr;
    if (!xhr || isExpiry(xhr)) { return; }
    var text = (xhr.status < 500 && plainText(xhr)) || textFor(xhr.status);
    notify(text, { code: xhr.status, near: event.detail.elt });
  });

  function unreachable(event) {
    notify(texts.textNetwork, { near: event.detail && event.detail.elt });
  }
  document.addEventListener("htmx:sendError", unreachable);
  document.addEventListener("htmx:timeout", unreachable);

  function reload(notice) {
    notice.setAttribute("aria-busy", "true");
    var frame = window.B24Frame;
    var asked = frame && frame.reloadWindow ? frame.reloadWindow() : Promise.reject(new Error());
    asked.catch(function () { window.location.reload(); });
  }

  document.addEventListener("b24:session-lost", function (event) {
    notify(texts.textSessionLost, {
      sticky: true,
      near: event.target !== document.body ? event.target : null,
      action: { label: texts.textReload, run: reload },
    });
  });

  window.B24Notices = { notify: notify };
})();
