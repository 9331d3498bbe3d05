// The chat inside the widget's iframe: wires the connection, the transcript and the view.
// Configuration comes from data- attributes on #supportbot-widget (rendered by the frame view).

import "./i18n.js";
import { SessionStore, WidgetConnection, socketUrl } from "./protocol.js";
import { Transcript } from "./transcript.js";
import { WidgetView } from "./view.js";

const DEFAULT_MAX_LENGTH = 4000;

function readConfig(root) {
  const data = root.dataset;
  const maxLength = parseInt(data.maxLength || "", 10);
  return {
    widgetKey: data.widgetKey || "",
    wsPath: data.wsPath || "/ws/widget/",
    locale: data.locale || navigator.language || "en",
    tenantName: data.tenantName || "",
    title: data.title || "",
    maxLength: Number.isFinite(maxLength) && maxLength > 0 ? maxLength : DEFAULT_MAX_LENGTH,
  };
}

// The page that embeds the widget, as the loader told us (only used as a postMessage target).
function parentOrigin() {
  const origin = new URLSearchParams(location.search).get("origin");
  if (!origin) return null;
  try {
    const url = new URL(origin);
    return url.origin === "null" ? null : url.origin;
  } catch {
    return null;
  }
}

function errorText(t, format, error) {
  switch (error.code) {
    case "bad_request":
      return t.errorBadRequest;
    case "too_long":
      return t.errorTooLong;
    case "rate_limited":
      return error.retry_after
        ? format(t.errorRateLimited, { seconds: Math.max(1, Math.ceil(error.retry_after)) })
        : t.errorRateLimitedShort;
    case "unavailable":
      return t.errorUnavailable;
    default:
      return t.errorGeneric;
  }
}

export function startWidget(root) {
  const config = readConfig(root);
  const i18n = globalThis.SupportbotWidgetI18n;
  const t = i18n.pick(config.locale);
  const embedded = window.parent !== window;
  const target = parentOrigin();

  const tellParent = (type) => {
    if (!embedded || !target) return;
    try {
      window.parent.postMessage({ source: "supportbot-widget", type }, target);
    } catch {
      // An origin the browser cannot use: nothing to tell.
    }
  };

  let view = null;
  let scheduled = false;
  const transcript = new Transcript(() => {
    if (scheduled || !view) return;
    scheduled = true;
    requestAnimationFrame(() => {
      scheduled = false;
      view.render(transcript.ordered());
    });
  });

  const store = new SessionStore(config.widgetKey);
  const connection = new WidgetConnection({
    url: socketUrl(config.wsPath),
    widgetKey: config.widgetKey,
    locale: config.locale,
    store,
    on: {
      state: (name, info) => view?.setConnection(name, info),
      reset: () => transcript.clear(),
      messages: (messages) => transcript.upsertMessages(messages),
      stream: (id, update) => transcript.stream(id, update),
      error: (error) => {
        const text = errorText(t, i18n.format, error);
        const retry = error.code === "rate_limited" || error.code === "bad_request";
        const failed = error.code !== "unavailable";
        if (error.client_id && error.code === "too_long") {
          const entry = transcript.entries.get(`c:${error.client_id}`);
          if (entry) view.restoreDraft(entry.text);
        }
        if (!error.client_id || !transcript.noticeFor(error.client_id, { text, retry, failed })) {
          transcript.addNotice(text);
        }
      },
    },
  });

  view = new WidgetView(root, {
    t,
    format: i18n.format,
    title: config.title || config.tenantName || t.defaultTitle,
    subtitle: t.subtitle,
    embedded,
    maxLength: config.maxLength,
    onSend: (text) => {
      if (!WidgetConnection.fits(text)) {
        transcript.addNotice(t.errorTooLong);
        return false;
      }
      const clientId = connection.send(text);
      transcript.addLocal(clientId, text);
      return true;
    },
    onRetry: (clientId) => {
      const entry = transcript.entries.get(`c:${clientId}`);
      if (!entry) return;
      transcript.addLocal(clientId, entry.text);
      connection.send(entry.text, clientId);
    },
    onClose: () => tellParent("close"),
    onStartOver: () => connection.startOver(),
  });

  // What the last visit left: the transcript, and messages still waiting for an ack.
  transcript.upsertMessages(connection.cachedMessages());
  for (const item of connection.pendingOutbox()) transcript.addLocal(item.client_id, item.text);
  view.render(transcript.ordered());
  view.scrollToEnd();

  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && embedded) {
      event.preventDefault();
      tellParent("close");
    }
  });
  window.addEventListener("message", (event) => {
    if (!target || event.origin !== target || event.source !== window.parent) return;
    const data = event.data;
    if (data && data.source === "supportbot-loader" && data.type === "focus") view.focusInput();
  });

  connection.start();
  tellParent("ready");
  if (!embedded) view.focusInput();
  return { connection, transcript, view };
}

const root = document.getElementById("supportbot-widget");
if (root) {
  // Handy for tests and debugging; holds nothing secret.
  window.supportbotWidget = startWidget(root);
}
