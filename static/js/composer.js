/*
 * b24app composer: the little the server cannot do. htmx does the rest (see compose.html).
 *
 * - The formatting toolbar inserts BB codes at the cursor of the message textarea.
 * - "Choose in Bitrix24…" opens the portal's user selector (window.B24Frame, static/js/frame.js)
 *   and asks the server to re-render the recipient.
 * - Inputs marked data-isolate-input (search, JSON boxes, helper controls) keep their typing
 *   from refreshing the preview and the draft.
 * - Colour swatches mirror their text inputs; <time data-local> shows in the viewer's time zone.
 * No inline handlers anywhere (the CSP forbids them): everything is wired from here.
 */
(function () {
  "use strict";

  function composer() { return document.getElementById("composer"); }

  function changed(element) {
    element.dispatchEvent(new Event("input", { bubbles: true }));
  }

  // --- BB codes at the cursor -----------------------------------------------------------------
  function targetArea(button) {
    var bar = button.closest("[data-bb-target]");
    return bar ? document.getElementById(bar.getAttribute("data-bb-target")) : null;
  }

  function wrap(area, open, close, fallback) {
    var start = area.selectionStart, end = area.selectionEnd, value = area.value;
    var inner = value.slice(start, end) || fallback || "";
    area.value = value.slice(0, start) + open + inner + close + value.slice(end);
    area.focus();
    area.setSelectionRange(start + open.length, start + open.length + inner.length);
    changed(area);
  }

  function quote(area) {
    var value = area.value;
    var start = value.lastIndexOf("\n", area.selectionStart - 1) + 1;
    var end = value.indexOf("\n", area.selectionEnd);
    if (end < 0) { end = value.length; }
    var lines = value.slice(start, end).split("\n").map(function (line) { return ">>" + line; });
    area.value = value.slice(0, start) + lines.join("\n") + value.slice(end);
    area.focus();
    changed(area);
  }

  function mention(area, button) {
    function insert(id, name) { wrap(area, "[user=" + id + "]", "[/user]", name || ""); }
    function ask() {
      var id = window.prompt(button.getAttribute("data-prompt") || "User ID");
      if (id && /^\d+$/.test(id.trim())) { insert(id.trim(), ""); }
    }
    if (!window.B24Frame) { ask(); return; }
    window.B24Frame.selectUser().then(function (user) {
      if (Array.isArray(user)) { user = user[0]; }
      if (user && user.id) { insert(user.id, user.name); }
    }, ask);
  }

  function format(button) {
    var area = targetArea(button);
    if (!area) { return; }
    var code = button.getAttribute("data-bb");
    if (["b", "i", "u", "s"].indexOf(code) >= 0) {
      wrap(area, "[" + code + "]", "[/" + code + "]");
    } else if (code === "code") {
      wrap(area, "[code]", "[/code]");
    } else if (code === "quote") {
      quote(area);
    } else if (code === "color") {
      var swatch = button.parentElement.querySelector("[data-bb-color]");
      wrap(area, "[color=" + (swatch ? swatch.value : "#d0021b") + "]", "[/color]");
    } else if (code === "url") {
      var link = window.prompt(button.getAttribute("data-prompt") || "https://", "https://");
      if (!link || !/^(https?:\/\/|\/)\S+$/.test(link.trim())) { return; }
      var selected = area.value.slice(area.selectionStart, area.selectionEnd);
      if (selected) { wrap(area, "[url=" + link.trim() + "]", "[/url]"); }
      else { wrap(area, "[url]", "[/url]", link.trim()); }
    } else if (code === "user") {
      mention(area, button);
    }
  }

  // --- recipient through the portal's selector ------------------------------------------------
  function selectRecipient(button) {
    function hint() {
      var search = document.querySelector("#recipient input[name=recipient_q]");
      if (search) { search.focus(); }
    }
    if (!window.B24Frame) { hint(); return; }
    button.disabled = true;
    window.B24Frame.selectUser().then(function (user) {
      button.disabled = false;
      if (Array.isArray(user)) { user = user[0]; }
      if (!user || !user.id) { return; }
      document.getElementById("id_user_id").value = String(user.id);
      document.getElementById("id_recipient_name").value = user.name || "";
      window.htmx.trigger("#recipient", "recipient-picked");
    }, function () { button.disabled = false; hint(); });
  }

  function copy(button) {
    var source = document.getElementById(button.getAttribute("data-copy"));
    if (!source) { return; }
    var done = function () {
      var label = button.textContent;
      button.textContent = "✓";
      setTimeout(function () { button.textContent = label; }, 1200);
    };
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(source.value).then(done, function () {});
    } else {
      source.select();
      document.execCommand("copy");
      done();
    }
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("button");
    if (!button || !button.closest("#app-page")) { return; }
    if (button.hasAttribute("data-bb")) { format(button); }
    else if (button.hasAttribute("data-select-user")) { selectRecipient(button); }
    else if (button.hasAttribute("data-copy")) { copy(button); }
    else if (button.hasAttribute("data-toast-close")) { button.closest("[data-toast]").remove(); }
  });

  // Ctrl/Cmd+Enter sends, like in the Bitrix24 messenger.
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Enter" || !(event.ctrlKey || event.metaKey)) { return; }
    var form = composer();
    if (!form || !form.contains(event.target)) { return; }
    var send = form.querySelector("button[name=send]");
    if (send && form.requestSubmit) { event.preventDefault(); form.requestSubmit(send); }
  });

  // --- per-swap set-up ------------------------------------------------------------------------
  function each(root, selector, fn) {
    if (root.matches && root.matches(selector)) { fn(root); }
    if (root.querySelectorAll) { root.querySelectorAll(selector).forEach(fn); }
  }

  function isolate(element) {
    ["input", "change"].forEach(function (type) {
      element.addEventListener(type, function (event) { event.stopPropagation(); });
    });
  }

  var HEX = /^#(?:[0-9a-f]{3}){1,2}$/i;

  function swatch(picker) {
    var text = document.getElementById(picker.getAttribute("data-color-for"));
    if (!text) { return; }
    function sync() {
      var value = text.value.trim();
      if (HEX.test(value)) {
        picker.value = value.length === 4
          ? "#" + value[1] + value[1] + value[2] + value[2] + value[3] + value[3]
          : value.toLowerCase();
        picker.classList.remove("is-empty");
      } else {
        picker.classList.add("is-empty");
      }
    }
    sync();
    text.addEventListener("input", sync);
    picker.addEventListener("input", function () {
      text.value = picker.value;
      changed(text);
    });
  }

  function sizeSelect(select) {
    select.addEventListener("change", function () {
      var area = targetArea(select);
      if (area && select.value) { wrap(area, "[size=" + select.value + "]", "[/size]"); }
      select.value = "";
    });
  }

  function localTime(element) {
    var date = new Date(element.getAttribute("datetime"));
    if (isNaN(date.getTime()) || !window.Intl) { return; }
    var options = element.hasAttribute("data-time-only")
      ? { hour: "2-digit", minute: "2-digit" }
      : { dateStyle: "medium", timeStyle: "short" };
    try {
      var lang = document.documentElement.lang || undefined;
      element.textContent = new Intl.DateTimeFormat(lang, options).format(date);
      element.title = date.toString();
    } catch (e) { /* keep the server's UTC text */ }
  }

  function setUp(root) {
    each(root, "[data-isolate-input]", isolate);
    each(root, "input[type=color][data-color-for]", swatch);
    each(root, "select[data-bb-size]", sizeSelect);
    each(root, "time[data-local]", localTime);
  }

  // After a refused send, bring the first marked field into view (the Send button sits in the
  // other column, often far from it).
  document.addEventListener("htmx:afterSettle", function (event) {
    var detail = event.detail || {};
    var path = (detail.pathInfo && detail.pathInfo.requestPath) ||
      (detail.requestConfig && detail.requestConfig.path) || "";
    var form = composer();
    if (!form || !/\/send\/$/.test(path)) { return; }
    var first = form.querySelector(".b24m-editor [aria-invalid=true], .b24m-editor .b24-field-error");
    if (first && first.scrollIntoView) { first.scrollIntoView({ block: "center", behavior: "smooth" }); }
  });

  if (window.htmx) {
    window.htmx.onLoad(setUp);
  } else {
    document.addEventListener("DOMContentLoaded", function () { setUp(document.body); });
  }
})();
