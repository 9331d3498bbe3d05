// Every string the widget shows, keyed by language. The one place to translate the widget.
//
// This file is loaded two ways, so it has no `import`/`export`:
//   - by the iframe app as a module (`import "./i18n.js"`), and
//   - by loader.js as a classic script on the customer's page (for the launcher's labels).
// Both read the frozen table it publishes on `globalThis.SupportbotWidgetI18n`.
//
// Placeholders look like {name}; `format()` fills them.
(function publish(root) {
  "use strict";
  if (root.SupportbotWidgetI18n) return;

  const STRINGS = {
    en: {
      // Launcher (customer's page)
      launcherOpen: "Open support chat",
      launcherClose: "Close support chat",
      frameTitle: "Support chat",

      // Header
      defaultTitle: "Support",
      subtitle: "Our assistant answers right away. A person from the team can join.",
      close: "Close chat",

      // Message list and roles
      messagesLabel: "Conversation",
      you: "You",
      assistant: "Assistant",
      agent: "Support team",
      typing: "The assistant is typing…",
      sources: "Sources",
      emptyTitle: "Hi! How can we help?",
      emptyBody: "Ask a question and the assistant will answer here.",

      // Composer
      inputLabel: "Your message",
      inputPlaceholder: "Type your question…",
      send: "Send",
      keyboardHint: "Enter to send, Shift+Enter for a new line",
      charactersLeft: "{count} characters left",
      overLimit: "{count} characters over the limit",

      // Message states
      sending: "Sending…",
      notSent: "Not sent",
      retry: "Try again",
      replyFailed:
        "The assistant could not finish this reply. Your message is saved and a person from the team can see it.",

      // Error frames
      errorBadRequest: "This message could not be sent. Please try again.",
      errorTooLong: "This message is too long. Please shorten it and send it again.",
      errorRateLimited: "You are sending messages too quickly. Please wait {seconds} seconds and try again.",
      errorRateLimitedShort: "You are sending messages too quickly. Please wait a moment and try again.",
      errorUnavailable:
        "The assistant cannot answer right now. Your message is saved and a person from the team can see it.",
      errorGeneric: "Something went wrong. Please try again.",

      // Connection
      connecting: "Connecting…",
      reconnecting: "Connection lost. Reconnecting…",
      reconnectingIn: "Connection lost. Trying again in {seconds} seconds…",
      busy: "Too many chat windows are open. Trying again in {seconds} seconds…",
      refused: "This chat is not available on this website. Please contact the company another way.",
      startOver: "Start a new conversation",
      offline: "You are offline. Your messages will be sent when the connection is back.",
    },
  };

  // The table for `locale` ("pt-BR" -> "pt-br", then "pt", then "en"); a string missing from
  // a translation falls back to English.
  function pick(locale) {
    return Object.freeze(Object.assign({}, STRINGS.en, STRINGS[languageOf(locale)]));
  }

  function format(template, values) {
    return String(template).replace(/\{(\w+)\}/g, (whole, name) =>
      values && Object.prototype.hasOwnProperty.call(values, name) ? String(values[name]) : whole,
    );
  }

  // The language tag actually used for `locale` (for <html lang>).
  function languageOf(locale) {
    const wanted = String(locale || "").toLowerCase().replace("_", "-");
    if (STRINGS[wanted]) return wanted;
    const base = wanted.split("-")[0];
    return STRINGS[base] ? base : "en";
  }

  for (const table of Object.values(STRINGS)) Object.freeze(table);
  root.SupportbotWidgetI18n = Object.freeze({
    strings: Object.freeze(STRINGS),
    pick,
    format,
    languageOf,
  });
})(typeof globalThis !== "undefined" ? globalThis : window);
