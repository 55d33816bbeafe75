/*
 * b24app campaigns: the little the campaign pages need from script. Without it every field still
 * works (IDs typed by hand, the server's default time zone).
 *
 * - A time-zone input marked data-browser-zone (neither the settings nor Bitrix24 named a zone)
 *   takes the browser's zone, as long as nobody typed into it.
 * - "Choose in Bitrix24…" buttons (data-select-users="<input id>") open the portal's own user
 *   selector (window.B24Frame.selectUsers, static/js/frame.js) and add the chosen users' IDs to
 *   that input, with their names listed below it. Outside a Bitrix24 page the buttons stay hidden.
 * No inline handlers (the CSP forbids them): everything is wired from here, after every swap.
 */
(function () {
  "use strict";
  if (window.B24Campaigns) { return; }  // loaded by the home page and by a campaign page alike
  window.B24Campaigns = true;

  function each(root, selector, fn) {
    if (root.matches && root.matches(selector)) { fn(root); }
    if (root.querySelectorAll) { root.querySelectorAll(selector).forEach(fn); }
  }

  // --- time zone --------------------------------------------------------------------------------
  function browserZone() {
    try {
      return (window.Intl && Intl.DateTimeFormat().resolvedOptions().timeZone) || "";
    } catch (e) { return ""; }
  }

  function zone(input) {
    if (input.dataset.browserZoneDone === "1") { return; }
    input.dataset.browserZoneDone = "1";
    var found = browserZone();
    if (found && input.value === input.defaultValue) { input.value = found; }
  }

  // --- users through the portal's selector ------------------------------------------------------
  function ids(text) {
    return text.split(/[\s,;]+/).filter(function (part) { return /^\d+$/.test(part); });
  }

  function showNames(input, users) {
    var list = document.getElementById(input.id + "-picked");
    if (!list) { return; }
    users.forEach(function (user) {
      var item = document.createElement("li");
      item.textContent = (user.name || "") + " (" + user.id + ")";
      list.appendChild(item);
    });
    list.hidden = !list.children.length;
  }

  function pickUsers(button) {
    var input = document.getElementById(button.getAttribute("data-select-users"));
    if (!input || !window.B24Frame) { return; }
    button.disabled = true;
    window.B24Frame.selectUsers().then(function (users) {
      button.disabled = false;
      if (!users) { return; }
      if (!Array.isArray(users)) { users = [users]; }
      var have = ids(input.value);
      var added = [];
      users.forEach(function (user) {
        var id = user && String(user.id || "").replace(/^U/, "");
        if (/^\d+$/.test(id) && have.indexOf(id) < 0) {
          have.push(id);
          added.push({ id: id, name: user.name });
        }
      });
      input.value = have.join(", ");
      input.dispatchEvent(new Event("change", { bubbles: true }));
      showNames(input, added);
    }, function () { button.disabled = false; input.focus(); });
  }

  function picker(button) {
    // Only inside a Bitrix24 page is there a selector to open.
    var inFrame = window.parent && window.parent !== window && window.B24Frame;
    button.hidden = !inFrame;
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("button[data-select-users]");
    if (button) { event.preventDefault(); pickUsers(button); }
  });

  function setUp(root) {
    each(root, "input[data-browser-zone]", zone);
    each(root, "button[data-select-users]", picker);
  }

  if (window.htmx) {
    window.htmx.onLoad(setUp);
  } else {
    document.addEventListener("DOMContentLoaded", function () { setUp(document.body); });
  }
})();
