/*
 * Supportbot widget loader. Paste on a website:
 *
 *   <script src="https://HOST/static/widget/loader.js" data-key="PUBLIC_KEY" async></script>
 *
 * It adds a chat button at the bottom right; the chat itself runs in an iframe served by HOST,
 * the origin this script was loaded from. Where the service has a widget origin of its own
 * (WIDGET_PUBLIC_URL), HOST is that origin: the frame and its socket then live on a host that
 * never receives the admin's cookies.
 * A signed-in visitor: add data-identity="<JWT signed by your backend>" or call
 * Supportbot.identify(token) (null signs them out); the token reaches the iframe by postMessage.
 * The loader's own elements live in a shadow root, so the page's CSS and the widget's do not
 * touch each other. The key is public: nothing here is secret.
 */
(function supportbotLoader() {
  "use strict";

  var SCRIPT_PATH = "/static/widget/loader.js";
  var MOBILE_MAX_WIDTH = 480;

  function findScript() {
    var current = document.currentScript;
    if (current && current.src && current.getAttribute("data-key")) return current;
    // With async (or when inserted by another script) currentScript may be null.
    var candidates = document.querySelectorAll('script[src*="' + SCRIPT_PATH + '"][data-key]');
    for (var i = 0; i < candidates.length; i += 1) {
      if (!candidates[i].hasAttribute("data-supportbot-started")) return candidates[i];
    }
    return null;
  }

  var script = findScript();
  if (!script) return;
  script.setAttribute("data-supportbot-started", "");

  var key = script.getAttribute("data-key") || "";
  var identity = script.getAttribute("data-identity") || null;
  var identityListeners = [];

  // The page's API: Supportbot.identify(token) signs the visitor in (a JWT from your backend),
  // renews their token, or signs them out (null). Every widget on the page hears it.
  window.Supportbot = window.Supportbot || {};
  var previousIdentify = window.Supportbot.identify;
  window.Supportbot.identify = function (token) {
    identity = typeof token === "string" && token ? token : null;
    for (var i = 0; i < identityListeners.length; i += 1) identityListeners[i]();
    if (typeof previousIdentify === "function") previousIdentify(token);
  };
  // The widget's origin: where the frame is opened and whose messages are believed.
  var hostOrigin;
  try {
    hostOrigin = new URL(script.src, location.href).origin;
  } catch (e) {
    return;
  }
  if (!key || !hostOrigin || hostOrigin === "null") return;

  window.__supportbotWidgets = window.__supportbotWidgets || {};
  if (window.__supportbotWidgets[hostOrigin + " " + key]) return; // pasted twice
  window.__supportbotWidgets[hostOrigin + " " + key] = true;

  var storageName = "supportbot-widget-open:" + key;
  var SVG_NS = "http://www.w3.org/2000/svg";
  var ICON_CHAT = "M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H8l-4 4V6a2 2 0 0 1 2-2z";
  var ICON_CLOSE =
    "M6.4 5 5 6.4 10.6 12 5 17.6 6.4 19l5.6-5.6 5.6 5.6 1.4-1.4-5.6-5.6L19 6.4 17.6 5 12 10.6z";

  // Styles for the shadow root. Constructed stylesheets need no inline <style> (kind to the
  // page's CSP); older browsers get a <style> element instead.
  var CSS = [
    ":host { all: initial; }",
    ".launcher { position: fixed; right: 20px; bottom: 20px; z-index: 2147483000;",
    "  display: flex; align-items: center; justify-content: center; box-sizing: border-box;",
    "  width: 60px; height: 60px; margin: 0; padding: 0; border: 0; border-radius: 50%;",
    "  color: #fff; background: #4338ca; cursor: pointer;",
    "  box-shadow: 0 6px 20px rgba(15, 23, 42, 0.28), 0 2px 6px rgba(15, 23, 42, 0.2);",
    "  transition: transform 0.15s ease, background-color 0.15s ease; }",
    ".launcher:hover { background: #3730a3; transform: scale(1.05); }",
    ".launcher:focus { outline: none; }",
    ".launcher:focus-visible { outline: 3px solid #fff; box-shadow: 0 0 0 6px #2563eb, 0 6px 20px rgba(15, 23, 42, 0.28); }",
    ".launcher svg { width: 28px; height: 28px; fill: currentColor; pointer-events: none; }",
    ".panel { position: fixed; right: 20px; bottom: 92px; z-index: 2147483001; box-sizing: border-box;",
    "  width: 384px; height: min(640px, calc(100vh - 116px)); max-height: calc(100vh - 116px);",
    "  border-radius: 16px; overflow: hidden; background: #fff;",
    "  box-shadow: 0 16px 48px rgba(15, 23, 42, 0.28), 0 2px 8px rgba(15, 23, 42, 0.12); }",
    ".panel[hidden] { display: none; }",
    ".fallback { display: flex; align-items: center; justify-content: center; box-sizing: border-box;",
    "  position: absolute; inset: 0; padding: 32px; margin: 0; text-align: center;",
    "  font: 15px/1.5 system-ui, -apple-system, 'Segoe UI', Roboto, Arial, sans-serif;",
    "  color: #7f1d1d; background: #fff; }",
    ".fallback[hidden] { display: none; }",
    ".panel iframe { display: block; width: 100%; height: 100%; border: 0; margin: 0; padding: 0;",
    "  background: #fff; color-scheme: light; }",
    "@media (max-width: " + (MOBILE_MAX_WIDTH - 1) + "px) {",
    "  .panel { inset: 0; right: 0; bottom: 0; width: 100%; height: 100%; max-height: none;",
    "    border-radius: 0; box-shadow: none; }",
    "  .launcher { right: 16px; bottom: 16px; width: 56px; height: 56px; }",
    "  .launcher[aria-expanded=\"true\"] { display: none; }",
    "}",
    "@media (max-height: 520px) and (min-width: " + MOBILE_MAX_WIDTH + "px) {",
    "  .panel { bottom: 84px; height: calc(100vh - 100px); }",
    "}",
    "@media (prefers-reduced-motion: reduce) { .launcher { transition: none; } }",
  ].join("\n");

  function svgIcon(path) {
    var svg = document.createElementNS(SVG_NS, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    var p = document.createElementNS(SVG_NS, "path");
    p.setAttribute("d", path);
    svg.appendChild(p);
    return svg;
  }

  function frameUrl() {
    return (
      hostOrigin +
      "/widget/frame/?key=" +
      encodeURIComponent(key) +
      "&locale=" +
      encodeURIComponent(navigator.language || "en") +
      "&origin=" +
      encodeURIComponent(location.origin) +
      (identity ? "&identity=1" : "")
    );
  }

  function rememberOpen(open) {
    try {
      if (open) sessionStorage.setItem(storageName, "1");
      else sessionStorage.removeItem(storageName);
    } catch (e) {
      // storage blocked: the widget simply starts closed on the next page
    }
  }

  function wasOpen() {
    try {
      return sessionStorage.getItem(storageName) === "1";
    } catch (e) {
      return false;
    }
  }

  function build(strings) {
    var host = document.createElement("div");
    host.setAttribute("data-supportbot-widget", "");
    // Inline, important styles so the page's CSS cannot move or hide the host element.
    var hostStyle = {
      all: "initial",
      position: "fixed",
      right: "0",
      bottom: "0",
      width: "0",
      height: "0",
      overflow: "visible",
      "z-index": "2147483000",
      display: "block",
    };
    for (var prop in hostStyle) host.style.setProperty(prop, hostStyle[prop], "important");

    var root = host.attachShadow ? host.attachShadow({ mode: "open" }) : host;
    var sheetApplied = false;
    try {
      if (root.adoptedStyleSheets !== undefined && typeof CSSStyleSheet === "function") {
        var sheet = new CSSStyleSheet();
        sheet.replaceSync(CSS);
        root.adoptedStyleSheets = [sheet];
        sheetApplied = true;
      }
    } catch (e) {
      sheetApplied = false;
    }
    if (!sheetApplied) {
      var style = document.createElement("style");
      style.textContent = CSS;
      root.appendChild(style);
    }

    var launcher = document.createElement("button");
    launcher.type = "button";
    launcher.className = "launcher";
    launcher.setAttribute("aria-expanded", "false");
    launcher.setAttribute("aria-controls", "supportbot-panel");
    launcher.setAttribute("aria-label", strings.launcherOpen);
    launcher.title = strings.launcherOpen;
    launcher.appendChild(svgIcon(ICON_CHAT));

    var panel = document.createElement("div");
    panel.className = "panel";
    panel.id = "supportbot-panel";
    panel.hidden = true;

    var iframe = null;
    var frameReady = false;
    var sentIdentity; // what the iframe was last given (undefined: nothing yet)
    var isOpen = false;
    var wantFocus = false; // opened by the visitor: move focus into the chat
    var readyTimer = null;

    // Shown when the chat page does not start (this site is not allowed to embed it, the key
    // is unknown, the service is down): plain words instead of a browser error page.
    var fallback = document.createElement("p");
    fallback.className = "fallback";
    fallback.setAttribute("role", "alert");
    fallback.hidden = true;
    panel.appendChild(fallback);

    function showFallback() {
      if (frameReady) return;
      fallback.textContent = strings.refused;
      fallback.hidden = false;
      if (iframe) iframe.setAttribute("aria-hidden", "true");
    }

    function focusFrame() {
      if (!iframe || !isOpen || !wantFocus) return;
      iframe.focus();
      if (frameReady && iframe.contentWindow) {
        iframe.contentWindow.postMessage({ source: "supportbot-loader", type: "focus" }, hostOrigin);
      }
    }

    function postIdentity() {
      if (!iframe || !iframe.contentWindow) return;
      sentIdentity = identity;
      iframe.contentWindow.postMessage(
        { source: "supportbot-loader", type: "identity", token: identity },
        hostOrigin
      );
    }
    identityListeners.push(function () {
      if (frameReady && identity !== sentIdentity) postIdentity();
    });

    function open(byVisitor) {
      if (isOpen) return;
      isOpen = true;
      wantFocus = byVisitor;
      if (!iframe) {
        iframe = document.createElement("iframe");
        iframe.src = frameUrl();
        iframe.title = strings.frameTitle;
        iframe.setAttribute("allow", "");
        iframe.setAttribute("referrerpolicy", "strict-origin-when-cross-origin");
        iframe.addEventListener("load", function () {
          clearTimeout(readyTimer);
          if (!frameReady) readyTimer = setTimeout(showFallback, 3000);
          focusFrame();
        });
        panel.appendChild(iframe);
        readyTimer = setTimeout(showFallback, 15000); // not even loaded by then
      }
      panel.hidden = false;
      launcher.setAttribute("aria-expanded", "true");
      launcher.setAttribute("aria-label", strings.launcherClose);
      launcher.title = strings.launcherClose;
      launcher.replaceChildren(svgIcon(ICON_CLOSE));
      rememberOpen(true);
      focusFrame();
    }

    function close() {
      if (!isOpen) return;
      isOpen = false;
      panel.hidden = true;
      launcher.setAttribute("aria-expanded", "false");
      launcher.setAttribute("aria-label", strings.launcherOpen);
      launcher.title = strings.launcherOpen;
      launcher.replaceChildren(svgIcon(ICON_CHAT));
      rememberOpen(false);
      launcher.focus();
    }

    launcher.addEventListener("click", function () {
      if (isOpen) close();
      else open(true);
    });

    document.addEventListener("keydown", function (event) {
      if (isOpen && (event.key === "Escape" || event.key === "Esc")) close();
    });

    window.addEventListener("message", function (event) {
      if (event.origin !== hostOrigin || !iframe || event.source !== iframe.contentWindow) return;
      var data = event.data;
      if (!data || data.source !== "supportbot-widget") return;
      if (data.type === "close") close();
      else if (data.type === "identity.request") postIdentity();
      else if (data.type === "ready") {
        frameReady = true;
        clearTimeout(readyTimer);
        fallback.hidden = true;
        iframe.removeAttribute("aria-hidden");
        if (sentIdentity !== undefined ? identity !== sentIdentity : identity !== null) postIdentity();
        focusFrame();
      }
    });

    root.appendChild(panel);
    root.appendChild(launcher);
    (document.body || document.documentElement).appendChild(host);

    // Still open from the previous page of this site: reopen, but leave focus to the page.
    if (wasOpen()) open(false);
  }

  // The launcher's words come from the widget's one string table (i18n.js), loaded as a
  // classic script from the same host.
  function withStrings(callback) {
    var existing = window.SupportbotWidgetI18n;
    if (existing) return callback(existing.pick(navigator.language));
    var tag = document.createElement("script");
    tag.src = hostOrigin + "/static/widget/i18n.js";
    tag.async = true;
    tag.onload = function () {
      if (window.SupportbotWidgetI18n) callback(window.SupportbotWidgetI18n.pick(navigator.language));
    };
    (document.head || document.documentElement).appendChild(tag);
  }

  function whenBodyReady(callback) {
    if (document.body) callback();
    else document.addEventListener("DOMContentLoaded", callback);
  }

  withStrings(function (strings) {
    whenBodyReady(function () {
      build(strings);
    });
  });
})();
