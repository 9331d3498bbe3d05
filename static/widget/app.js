// The chat inside the widget's iframe: wires the connection, the transcript and the view.
// Configuration comes from data- attributes on #supportbot-widget (rendered by the frame view).

import "./i18n.js";
import { AssistantPanel, assistantFromDataset, parseAssistant, withModeStrings } from "./assistant.js";
import { ConsentPanel, parseConsent } from "./consent.js";
import { MAX_OUTBOX, SessionStore, WidgetConnection, socketUrl } from "./protocol.js";
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
    assistant: assistantFromDataset(data),
    lawfulBasis: data.lawfulBasis || "",
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

// What to tell the visitor about an `error` frame: a key of the string table (with its values),
// so the notice can be said again in another language.
function errorText(error) {
  switch (error.code) {
    case "bad_request":
      return { key: "errorBadRequest" };
    case "too_long":
      return { key: "errorTooLong" };
    case "rate_limited":
      return error.retry_after
        ? { key: "errorRateLimited", values: { seconds: Math.max(1, Math.ceil(error.retry_after)) } }
        : { key: "errorRateLimitedShort" };
    case "unavailable":
      return { key: "errorUnavailable" };
    case "consent_required":
      return { key: "errorConsentRequired" };
    case "consent_stale":
      return { key: "errorConsentStale" };
    default:
      return { key: "errorGeneric" };
  }
}

const HANDOFF_PENDING_MS = 15000;

export function startWidget(root, identity = null) {
  const config = readConfig(root);
  const i18n = globalThis.SupportbotWidgetI18n;
  // The UI language: the visitor's locale at first, then the conversation's language when the
  // server says which it is (and it is one of the widget's languages).
  let t = i18n.pick(config.locale);
  // The server's default title ("Chat with Acme") is said in the UI language; a title of the
  // tenant's own choosing is shown as given.
  const defaultTitle = config.tenantName && config.title === `Chat with ${config.tenantName}`;
  const titleFor = (strings) =>
    config.title && !defaultTitle
      ? config.title
      : config.tenantName
        ? i18n.format(strings.chatWith, { name: config.tenantName })
        : strings.defaultTitle;
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
  let handoffTimer = null;
  // The conversation mode and the AI disclosure (assistant.js); the panel draws them.
  let assistant = config.assistant;
  let panel = null;
  let consentPanel = null; // the consent or privacy notice (consent.js)
  const strings = () => withModeStrings(t, assistant?.mode);
  const sentFields = new Map(); // client_id -> the fields its message went with (a retry keeps them)
  const onWelcome = (frame) => {
    consentPanel?.setConsent(parseConsent(frame.consent, consentPanel.consent));
    const mode = assistant?.mode;
    assistant = parseAssistant(frame.assistant, assistant);
    panel?.setAssistant(assistant);
    if (view && assistant?.mode !== mode) {
      // The header and the empty state say what the mode does.
      view.setStrings(strings());
      view.render(transcript.ordered());
    }
  };

  const applyLanguage = () => {
    document.documentElement.lang = t._lang;
    document.title = titleFor(t);
  };
  const setLanguage = (language) => {
    if (!language || !i18n.supports(language)) return;
    const next = i18n.pick(language);
    if (next._lang === t._lang) return;
    t = next;
    applyLanguage();
    if (view) {
      view.setStrings(strings());
      view.render(transcript.ordered());
    }
    panel?.setStrings(strings());
    consentPanel?.setStrings(strings());
  };
  const setHandoffPending = (pending) => {
    clearTimeout(handoffTimer);
    handoffTimer = pending ? setTimeout(() => view?.setHandoffPending(false), HANDOFF_PENDING_MS) : null;
    view?.setHandoffPending(pending);
  };
  const onConversation = (conversation) => {
    if (conversation) setLanguage(conversation.language);
    view?.setConversation(conversation); // ends a pending "Talk to a person" unless still with the bot
  };

  const transcript = new Transcript(() => {
    if (scheduled || !view) return;
    scheduled = true;
    requestAnimationFrame(() => {
      scheduled = false;
      const entries = transcript.ordered();
      view.render(entries);
      panel?.setWritten(entries.some((entry) => entry.role === "user"));
    });
  });

  const store = new SessionStore(config.widgetKey);
  const connection = new WidgetConnection({
    url: socketUrl(config.wsPath),
    widgetKey: config.widgetKey,
    locale: config.locale,
    store,
    identity,
    on: {
      state: (name, info) => {
        if (name !== "open") setHandoffPending(false);
        view?.setConnection(name, info);
      },
      reset: () => transcript.clear(),
      truncated: (firstSeq) => transcript.markGap(firstSeq),
      conversation: onConversation,
      messages: (messages) => transcript.upsertMessages(messages),
      stream: (id, update) => transcript.stream(id, update),
      welcome: onWelcome,
      consent: (frame) => {
        consentPanel?.recorded(frame.decision);
        if (frame.decision === "accept") view?.focusInput();
      },
      erased: () => {
        // The server forgot the visitor (their withdrawal, or a request): so does this widget.
        consentPanel?.setConsent(null);
        panel?.setWritten(false);
        transcript.addNotice({ key: "dataDeleted" });
      },
      error: (error) => {
        if (error.code === "consent_stale") {
          // The text changed: say so, and show the current one (a new welcome).
          transcript.addNotice({ key: "errorConsentStale" });
          connection.connect();
          return;
        }
        if (!error.client_id && view?.handoffPending) {
          // The answer to "Talk to a person" (a server that cannot hand over says bad_request).
          setHandoffPending(false);
          transcript.addNotice({ key: "handoffFailed" });
          return;
        }
        const text = errorText(error);
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

  // What the last visit knew of the conversation: its language, before the socket is up.
  const known = connection.conversation;
  if (known) setLanguage(known.language);
  applyLanguage();

  view = new WidgetView(root, {
    t: strings(),
    format: i18n.format,
    title: titleFor,
    embedded,
    maxLength: config.maxLength,
    onSend: (text) => {
      if (!WidgetConnection.fits(text)) {
        transcript.addNotice({ key: "errorTooLong" });
        return false;
      }
      const fields = panel.messageFields();
      const clientId = connection.send(text, undefined, fields);
      if (clientId === null) {
        // The outbox is full (offline for a while): the draft stays in the composer.
        transcript.addNotice({ key: "outboxFull", values: { count: MAX_OUTBOX } });
        return false;
      }
      if (fields.route) sentFields.set(clientId, fields);
      transcript.addLocal(clientId, text);
      panel.setWritten(true);
      return true;
    },
    onRetry: (clientId) => {
      const entry = transcript.entries.get(`c:${clientId}`);
      if (!entry) return;
      if (connection.send(entry.text, clientId, sentFields.get(clientId) || {}) === null) {
        transcript.addNotice({ key: "outboxFull", values: { count: MAX_OUTBOX } });
        return;
      }
      transcript.addLocal(clientId, entry.text);
    },
    onClose: () => tellParent("close"),
    onStartOver: () => connection.startOver(),
    onHandoff: () => {
      if (connection.requestHandoff()) setHandoffPending(true);
    },
    onDeleteData: () => {
      if (!window.confirm(strings().deleteConfirm)) return;
      if (!connection.sendConsent("withdraw", consentPanel?.consent?.version ?? null)) {
        transcript.addNotice({ key: "errorGeneric" });
      }
    },
  });
  if (known) view.setConversation(known);
  panel = new AssistantPanel({
    root,
    slot: view.assistantSlot,
    t: strings(),
    format: (template, values) => i18n.format(template, values, t._lang),
    onChoose: () => view.focusInput(),
  });
  panel.setAssistant(assistant);
  consentPanel = new ConsentPanel({
    root,
    slot: view.assistantSlot,
    t: strings(),
    onDecide: (decision, version) => connection.sendConsent(decision, version),
    // Under consent, nothing can be written before the text is shown (and accepted), unless
    // this browser already holds an accepted session.
    requiredBeforeWelcome:
      config.lawfulBasis === "consent" && !connection.session.consented && !connection.cachedMessages().length,
  });

  // What the last visit left: the transcript, and messages still waiting for an ack.
  transcript.upsertMessages(connection.cachedMessages());
  for (const item of connection.pendingOutbox()) transcript.addLocal(item.client_id, item.text);
  view.render(transcript.ordered());
  panel.setWritten(transcript.ordered().some((entry) => entry.role === "user"));
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
    if (!data || data.source !== "supportbot-loader") return;
    if (data.type === "focus") view.focusInput();
    else if (data.type === "identity") connection.setIdentity(data.token);
  });

  connection.start();
  tellParent("ready");
  if (!embedded) view.focusInput();
  return { connection, transcript, view, panel, consentPanel };
}

// The loader says (`identity=1`) when the page signed the visitor in: the token comes by
// postMessage (never in a URL), and the widget waits for it before its first `hello`.
function withIdentity(callback) {
  const target = parentOrigin();
  if (new URLSearchParams(location.search).get("identity") !== "1" || !target || window.parent === window) {
    callback(null);
    return;
  }
  const onMessage = (event) => {
    if (event.origin !== target || event.source !== window.parent) return;
    const data = event.data;
    if (!data || data.source !== "supportbot-loader" || data.type !== "identity") return;
    window.removeEventListener("message", onMessage);
    callback(typeof data.token === "string" && data.token ? data.token : null);
  };
  window.addEventListener("message", onMessage);
  window.parent.postMessage({ source: "supportbot-widget", type: "identity.request" }, target);
}

const root = document.getElementById("supportbot-widget");
if (root) {
  withIdentity((identity) => {
    // Handy for tests and debugging (the identity token stays inside the connection).
    window.supportbotWidget = startWidget(root, identity);
  });
}
