/*
 * Parent side of the Bitrix24 frame protocol (platform spec §6.2), as the faux portal plays it.
 *
 * The app's frame sends strings "<command>:<paramsJSON>:<callbackId>:<APP_SID>" (empty parts left
 * out) or, for placement commands, objects {method, params, callback, appSid}; the portal answers
 * "<callbackId>:<resultJSON>" to the app's origin. Messages from any other origin, from another
 * window, or with a different APP_SID are ignored.
 */
(function () {
  "use strict";

  var dataNode = document.getElementById("b24-frame-form");
  var iframe = document.getElementById("b24-app-frame");
  if (!dataNode || !iframe) {
    return;
  }
  var form = JSON.parse(dataNode.textContent);
  var init = form.init;
  var appOrigin = form.app_origin;

  function post(path, body) {
    return fetch(path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body || {}),
    }).then(function (response) {
      return response.json();
    });
  }

  function submitFrameForm() {
    var node = document.createElement("form");
    node.method = "POST";
    node.action = form.url;
    node.target = form.target;
    node.style.display = "none";
    Object.keys(form.fields).forEach(function (name) {
      var input = document.createElement("input");
      input.type = "hidden";
      input.name = name;
      input.value = form.fields[name];
      node.appendChild(input);
    });
    document.body.appendChild(node);
    node.submit();
    node.remove();
  }

  function parseMessage(data) {
    if (data && typeof data === "object") {
      return { command: data.method, params: data.params, callback: data.callback, sid: data.appSid };
    }
    if (typeof data !== "string") {
      return null;
    }
    var parts = data.split(":");
    var message = { command: parts[0], params: null, callback: null, sid: null };
    if (parts.length >= 3) {
      message.sid = parts[parts.length - 1];
      message.callback = parts[parts.length - 2];
      var raw = parts.slice(1, parts.length - 2).join(":");
      if (raw) {
        try {
          message.params = JSON.parse(raw);
        } catch (e) {
          message.params = raw;
        }
      }
    } else if (parts.length === 2) {
      message.sid = parts[1];
    }
    return message;
  }

  function reply(callback, result) {
    if (!callback || !iframe.contentWindow) {
      return;
    }
    var text = result === undefined ? callback : callback + ":" + JSON.stringify(result);
    iframe.contentWindow.postMessage(text, appOrigin);
  }

  // --- the user picker (selectUser / selectUsers) ---------------------------------------
  var picker = document.getElementById("b24-user-picker");

  function pickUsers(multiple) {
    return new Promise(function (resolve) {
      var list = picker.querySelector("ul");
      var search = picker.querySelector("input[type=search]");
      var ok = picker.querySelector("[data-ok]");
      var cancel = picker.querySelector("[data-cancel]");
      var chosen = {};
      var rows = [];
      picker.querySelector("header").textContent = multiple ? "Select employees" : "Select employee";
      ok.hidden = !multiple;

      function finish(value) {
        picker.close();
        search.oninput = null;
        ok.onclick = null;
        cancel.onclick = null;
        resolve(value);
      }

      function load() {
        fetch("/_sandbox/directory.json?q=" + encodeURIComponent(search.value), { credentials: "same-origin" })
          .then(function (response) { return response.json(); })
          .then(function (data) {
            rows = data;
            list.textContent = "";
            data.forEach(function (user) {
              var item = document.createElement("li");
              var box = document.createElement("input");
              box.type = "checkbox";
              box.hidden = !multiple;
              box.checked = Boolean(chosen[user.id]);
              var label = document.createElement("span");
              label.textContent = user.name + " — " + user.position;
              item.appendChild(box);
              item.appendChild(label);
              item.onclick = function (event) {
                if (!multiple) {
                  finish(user);
                  return;
                }
                if (event.target !== box) {
                  box.checked = !box.checked;
                }
                if (box.checked) {
                  chosen[user.id] = user;
                } else {
                  delete chosen[user.id];
                }
              };
              list.appendChild(item);
            });
          });
      }

      search.value = "";
      search.oninput = load;
      ok.onclick = function () { finish(Object.keys(chosen).map(function (id) { return chosen[id]; })); };
      cancel.onclick = function () { finish(multiple ? [] : null); };
      picker.showModal();
      load();
    });
  }

  // --- commands ------------------------------------------------------------------------
  var handlers = {
    getInitData: function () {
      return Promise.resolve(init);
    },
    setInstallFinish: function () {
      return post("/_sandbox/frame/install-finish").then(function (result) {
        if (result.ok) {
          // Bitrix reloads the frame with the handler URL once the install is finished.
          window.setTimeout(function () { window.location.reload(); }, 300);
        }
        return result.ok ? {} : { error: result.error };
      });
    },
    setInstall: function () {
      init.FIRST_RUN = false;
      return post("/_sandbox/frame/first-run").then(function () { return {}; });
    },
    refreshAuth: function () {
      return post("/_sandbox/frame/refresh-auth").then(function (result) {
        init.AUTH_ID = result.AUTH_ID;
        init.REFRESH_ID = result.REFRESH_ID;
        init.AUTH_EXPIRES = result.AUTH_EXPIRES;
        return result;
      });
    },
    resizeWindow: function (params) {
      params = params || {};
      var height = parseInt(params.height, 10);
      if (height > 0) {
        iframe.style.height = height + "px";
      }
      if (params.width && params.width !== "100%" && parseInt(params.width, 10) > 0) {
        iframe.style.width = parseInt(params.width, 10) + "px";
      } else {
        iframe.style.width = "100%";
      }
      return Promise.resolve({});
    },
    setTitle: function (params) {
      var title = params && params.title ? String(params.title) : "";
      document.title = title || document.title;
      var heading = document.getElementById("b24-app-title");
      if (heading && title) {
        heading.textContent = title;
      }
      return Promise.resolve({});
    },
    setScroll: function (params) {
      window.scrollTo(0, params && params.scroll ? parseInt(params.scroll, 10) : 0);
      return Promise.resolve({});
    },
    reloadWindow: function () {
      window.location.reload();
      return Promise.resolve({});
    },
    setAppOption: function (params) {
      Object.assign(init.APP_OPTIONS, params || {});
      return post("/_sandbox/frame/app-option", { options: params || {} }).then(function () { return {}; });
    },
    setUserOption: function (params) {
      Object.assign(init.USER_OPTIONS, params || {});
      return post("/_sandbox/frame/user-option", { options: params || {} }).then(function () { return {}; });
    },
    selectUser: function (params) {
      return pickUsers(Boolean(params && params.mult));
    },
    selectAccess: function () {
      return Promise.resolve([]);
    },
    imOpenMessenger: function () {
      window.open("/_sandbox/inbox/", "_blank");
      return Promise.resolve({});
    },
  };

  window.addEventListener("message", function (event) {
    if (event.origin !== appOrigin || event.source !== iframe.contentWindow) {
      return;
    }
    var message = parseMessage(event.data);
    if (!message || !message.command || message.sid !== form.app_sid) {
      return;
    }
    var handler = handlers[message.command];
    if (!handler) {
      console.warn("sandbox portal: unsupported frame command", message.command);
      reply(message.callback);
      return;
    }
    handler(message.params).then(function (result) {
      reply(message.callback, result);
    });
  });

  submitFrameForm();
})();
