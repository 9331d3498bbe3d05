// The widget's DOM: header, connection status, the conversation's banner (waiting for a person,
// with a person, closed), message list and composer.
// All text goes in through textContent or the safe Markdown renderer; no innerHTML anywhere.
//
// Every string comes from the table in `t` and can change while the chat is open (the server
// says the conversation is in another language): `setStrings()` says everything again.

import { makeLink, renderMarkdown, safeUrl } from "./markdown.js";

const SVG_NS = "http://www.w3.org/2000/svg";
const ICONS = {
  close: "M6.4 5 5 6.4 10.6 12 5 17.6 6.4 19l5.6-5.6 5.6 5.6 1.4-1.4-5.6-5.6L19 6.4 17.6 5 12 10.6z",
  send: "M3.4 20.4 21.5 12 3.4 3.6 3.4 10.1 16 12 3.4 13.9z",
  chat: "M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H8l-4 4V6a2 2 0 0 1 2-2z",
  person:
    "M12 12a4.5 4.5 0 1 0 0-9 4.5 4.5 0 0 0 0 9zm0 2c-4.4 0-8 2.2-8 5v2h16v-2c0-2.8-3.6-5-8-5z",
  alert: "M12 2 1 21h22L12 2zm1 15h-2v-2h2v2zm0-4h-2V9h2v4z",
};

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text != null) node.textContent = text;
  return node;
}

function icon(name, className = "sb-icon") {
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  svg.setAttribute("class", className);
  const path = document.createElementNS(SVG_NS, "path");
  path.setAttribute("d", ICONS[name]);
  svg.appendChild(path);
  return svg;
}

function visuallyHidden(text) {
  return el("span", "sb-visually-hidden", text);
}

// A language tag fit for a `lang` attribute ("es", "pt-BR"), or null.
function langTag(value) {
  return typeof value === "string" && /^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8}){0,3}$/.test(value) ? value : null;
}

function initial(name) {
  const first = Array.from(String(name).trim())[0];
  return first ? first.toLocaleUpperCase() : "";
}

export class WidgetView {
  /**
   * options: {t, format(template, values, lang), title(t), embedded, maxLength,
   *           onSend(text), onRetry(clientId), onClose(), onStartOver(), onHandoff(),
   *           onDeleteData()}
   */
  constructor(root, options) {
    this.root = root;
    this.o = options;
    this.t = options.t;
    this.nodes = new Map(); // entry key -> {node, rev}
    this.labels = []; // functions that (re)apply the strings of the static parts
    this.statusTimer = null;
    this.connection = { state: "idle", info: {} };
    this.conversation = null; // parseConversation's shape, or null (the server does not say)
    this.handoffPending = false;
    this.build();
  }

  /** `fn` applies some strings now and again after every setStrings(). */
  label(fn) {
    this.labels.push(fn);
    fn(this.t);
  }

  format(template, values) {
    return this.o.format(template, values, this.t._lang);
  }

  /** A notice's text: a string, or {key, values} of the string table. */
  say(text) {
    if (text && typeof text === "object") return this.format(this.t[text.key] ?? this.t.errorGeneric, text.values);
    return String(text ?? "");
  }

  /** Say everything again from another string table. Call render() afterwards. */
  setStrings(t) {
    this.t = t;
    for (const fn of this.labels) fn(t);
    for (const item of this.nodes.values()) item.rev = -1;
    if (!this.status.hidden) this.setConnection(this.connection.state, this.connection.info);
    this.setConversation(this.conversation);
    this.updateComposer();
  }

  build() {
    this.root.replaceChildren();
    this.root.classList.add("sb-app");

    // Header
    const header = el("header", "sb-header");
    const badge = el("div", "sb-header__badge");
    badge.appendChild(icon("chat"));
    const heading = el("div", "sb-header__text");
    const title = el("h1", "sb-title");
    const subtitle = el("p", "sb-subtitle");
    this.label((t) => {
      title.textContent = this.o.title(t);
      subtitle.textContent = t.subtitle;
    });
    heading.append(title, subtitle);
    header.append(badge, heading, this.buildMenu());
    if (this.o.embedded) {
      const close = el("button", "sb-icon-button sb-close");
      close.type = "button";
      this.label((t) => {
        close.setAttribute("aria-label", t.close);
        close.title = t.close;
      });
      close.appendChild(icon("close"));
      close.addEventListener("click", () => this.o.onClose());
      header.appendChild(close);
    }

    // Connection status
    this.status = el("div", "sb-status");
    this.status.setAttribute("role", "status");
    this.status.hidden = true;

    // The conversation's state: waiting for a person, with a person, closed.
    this.banner = el("div", "sb-banner");
    this.banner.setAttribute("role", "status");
    this.banner.hidden = true;

    // Message list
    this.list = el("div", "sb-messages");
    this.list.id = "sb-messages";
    this.list.setAttribute("role", "log");
    this.list.setAttribute("aria-live", "polite");
    this.list.tabIndex = 0;
    this.empty = el("div", "sb-empty");
    const emptyTitle = el("p", "sb-empty__title");
    const emptyBody = el("p", "sb-empty__body");
    this.label((t) => {
      this.list.setAttribute("aria-label", t.messagesLabel);
      emptyTitle.textContent = t.emptyTitle;
      emptyBody.textContent = t.emptyBody;
    });
    this.empty.append(emptyTitle, emptyBody);
    this.list.appendChild(this.empty);

    // Composer, with "Talk to a person" above the input
    this.form = el("form", "sb-composer");
    this.form.noValidate = true;
    this.actions = el("div", "sb-composer__actions");
    this.actions.hidden = true;
    this.handoffButton = el("button", "sb-handoff");
    this.handoffButton.type = "button";
    this.handoffLabel = el("span", "sb-handoff__label");
    this.handoffButton.append(icon("person", "sb-icon sb-handoff__icon"), this.handoffLabel);
    this.handoffButton.addEventListener("click", () => {
      if (!this.handoffButton.disabled && !this.handoffPending) this.o.onHandoff?.();
    });
    this.actions.appendChild(this.handoffButton);
    const label = el("label", "sb-visually-hidden");
    label.htmlFor = "sb-input";
    const row = el("div", "sb-composer__row");
    this.input = el("textarea", "sb-input");
    this.input.id = "sb-input";
    this.input.name = "message";
    this.input.rows = 1;
    this.input.autocomplete = "off";
    this.input.setAttribute("aria-describedby", "sb-hint sb-counter");
    this.sendButton = el("button", "sb-send");
    this.sendButton.type = "submit";
    this.sendButton.appendChild(icon("send"));
    row.append(this.input, this.sendButton);
    const foot = el("div", "sb-composer__foot");
    this.hint = el("span", "sb-hint");
    this.hint.id = "sb-hint";
    this.counter = el("span", "sb-counter");
    this.counter.id = "sb-counter";
    foot.append(this.hint, this.counter);
    this.label((t) => {
      label.textContent = t.inputLabel;
      this.input.placeholder = t.inputPlaceholder;
      this.sendButton.setAttribute("aria-label", t.send);
      this.sendButton.title = t.send;
      this.hint.textContent = t.keyboardHint;
    });
    // The AI disclosure and the visitor's choice of who answers (assistant.js) go here.
    this.assistantSlot = el("div", "sb-assistant");
    this.form.append(this.actions, this.assistantSlot, label, row, foot);

    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    this.input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.altKey && !event.ctrlKey && !event.metaKey && !event.isComposing) {
        event.preventDefault();
        this.submit();
      }
    });
    this.input.addEventListener("input", () => this.updateComposer());

    this.root.append(header, this.status, this.banner, this.list, this.form);
    this.updateComposer();
    this.setConversation(null);
  }

  /** The visitor's menu in the header: "Delete my data / withdraw consent". */
  buildMenu() {
    const menu = el("div", "sb-menu");
    const button = el("button", "sb-icon-button sb-menu__button", "\u22EF");
    button.type = "button";
    button.setAttribute("aria-haspopup", "menu");
    button.setAttribute("aria-expanded", "false");
    const list = el("div", "sb-menu__list");
    list.setAttribute("role", "menu");
    list.hidden = true;
    const erase = el("button", "sb-menu__item sb-delete-data");
    erase.type = "button";
    erase.setAttribute("role", "menuitem");
    this.label((t) => {
      button.setAttribute("aria-label", t.menu);
      button.title = t.menu;
      erase.textContent = t.deleteMyData;
    });
    const toggle = (open) => {
      list.hidden = !open;
      button.setAttribute("aria-expanded", String(open));
    };
    button.addEventListener("click", () => toggle(list.hidden));
    erase.addEventListener("click", () => {
      toggle(false);
      this.o.onDeleteData?.();
    });
    list.appendChild(erase);
    menu.append(button, list);
    return menu;
  }

  /**
   * The conversation's state from the server, or null (a server that does not describe it: no
   * banner and no "Talk to a person", which such a server would not understand).
   */
  setConversation(conversation) {
    const { t } = this;
    this.conversation = conversation;
    const status = conversation?.status ?? null;
    this.root.dataset.conversation = status ?? "";
    if (status !== "bot") this.handoffPending = false;

    // "Talk to a person": only while the assistant is answering.
    this.actions.hidden = status !== "bot";
    this.handoffLabel.textContent = this.handoffPending ? t.talkToPersonPending : t.talkToPerson;
    this.handoffButton.setAttribute("aria-busy", this.handoffPending ? "true" : "false");
    this.updateHandoffButton();

    const name = conversation?.agent?.name || "";
    let text = null;
    let lead = null;
    if (status === "waiting_for_agent") {
      text = t.waitingForAgent;
      lead = el("span", "sb-banner__pulse");
    } else if (status === "with_agent") {
      text = name ? this.format(t.withAgentNamed, { name }) : t.withAgent;
      lead = this.avatar(name);
    } else if (status === "closed") {
      text = t.conversationClosed;
      lead = icon("chat", "sb-icon sb-banner__icon");
    }
    if (text === null) {
      this.banner.hidden = true;
      this.banner.replaceChildren();
      this.banner.className = "sb-banner";
      return;
    }
    const tone = status === "closed" ? "closed" : status === "with_agent" ? "agent" : "waiting";
    this.banner.className = `sb-banner sb-banner--${tone}`;
    // Replace only when the words change, so a screen reader does not hear the same thing twice.
    if (this.banner.hidden || this.banner.dataset.text !== text) {
      this.banner.replaceChildren(lead, el("span", "sb-banner__text", text));
      this.banner.dataset.text = text;
    }
    this.banner.hidden = false;
  }

  /** "Talk to a person" was pressed and the server has not answered yet. */
  setHandoffPending(pending) {
    this.handoffPending = Boolean(pending) && this.conversation?.status === "bot";
    this.setConversation(this.conversation);
  }

  updateHandoffButton() {
    this.handoffButton.disabled = this.handoffPending || this.connection.state !== "open";
  }

  avatar(name) {
    const avatar = el("span", "sb-avatar");
    avatar.setAttribute("aria-hidden", "true");
    const letter = name ? initial(name) : "";
    if (letter) avatar.textContent = letter;
    else avatar.appendChild(icon("person"));
    return avatar;
  }

  focusInput() {
    if (!this.input.disabled) this.input.focus({ preventScroll: true });
  }

  submit() {
    if (this.input.disabled) return;
    const text = this.input.value.trim();
    if (!text || text.length > this.o.maxLength) {
      this.updateComposer();
      return;
    }
    if (this.o.onSend(text) !== false) {
      this.input.value = "";
      this.updateComposer();
      this.scrollToEnd();
    }
  }

  /** Put text back in the composer (a message the server refused as too long), if it is empty. */
  restoreDraft(text) {
    if (this.input.value.trim()) return;
    this.input.value = text;
    this.updateComposer();
  }

  updateComposer() {
    const length = this.input.value.trim().length;
    const left = this.o.maxLength - length;
    this.sendButton.disabled = this.input.disabled || length === 0 || left < 0;
    if (left < 0) {
      this.counter.textContent = this.format(this.t.overLimit, { count: -left });
      this.counter.className = "sb-counter sb-counter--over";
    } else if (left <= Math.min(500, this.o.maxLength / 5)) {
      this.counter.textContent = this.format(this.t.charactersLeft, { count: left });
      this.counter.className = "sb-counter";
    } else {
      this.counter.textContent = "";
      this.counter.className = "sb-counter";
    }
    // Grow with the text, up to a few lines (CSSOM, allowed by the page's style-src).
    this.input.style.height = "auto";
    this.input.style.height = `${Math.min(this.input.scrollHeight, 144)}px`;
  }

  /** state: connecting | open | waiting | offline | refused | idle */
  setConnection(state, info = {}) {
    const { t } = this;
    clearTimeout(this.statusTimer);
    this.connection = { state, info };
    this.root.dataset.connection = state;
    this.updateHandoffButton();
    const show = (text, tone) => {
      this.status.replaceChildren(el("span", "sb-status__text", text));
      this.status.className = `sb-status sb-status--${tone}`;
      this.status.hidden = false;
    };
    if (state === "open" || state === "idle") {
      this.status.hidden = true;
      this.status.replaceChildren();
      this.setComposerEnabled(true);
    } else if (state === "refused") {
      show(t.refused, "error");
      this.status.prepend(icon("alert", "sb-icon sb-status__icon"));
      if (info.hadSession) {
        const again = el("button", "sb-link-button", t.startOver);
        again.type = "button";
        again.addEventListener("click", () => this.o.onStartOver());
        this.status.appendChild(again);
      }
      this.setComposerEnabled(false);
    } else if (state === "offline") {
      show(t.offline, "warn");
    } else if (state === "waiting") {
      const seconds = Math.max(1, Math.round((info.delayMs || 0) / 1000));
      if (info.busy) show(this.format(t.busy, { seconds }), "warn");
      else if (info.code === 4400) show(t.startFailed, "warn");
      else if (seconds >= 3) show(this.format(t.reconnectingIn, { seconds }), "warn");
      else show(t.reconnecting, "warn");
    } else if (state === "connecting") {
      // Only say so if it takes a moment; a quick connect should not flash a banner.
      const tone = info.attempt ? "warn" : "info";
      const text = info.attempt ? t.reconnecting : t.connecting;
      if (this.status.hidden) this.statusTimer = setTimeout(() => show(text, tone), 600);
      else show(text, tone);
    }
  }

  setComposerEnabled(enabled) {
    this.input.disabled = !enabled;
    this.form.classList.toggle("sb-composer--disabled", !enabled);
    this.updateComposer();
  }

  scrollToEnd() {
    this.list.scrollTop = this.list.scrollHeight;
  }

  /** Draw `entries` (Transcript.ordered()), touching only what changed. */
  render(entries) {
    const nearEnd = this.list.scrollHeight - this.list.scrollTop - this.list.clientHeight < 96;
    const seen = new Set();
    this.empty.hidden = entries.length > 0;
    let cursor = this.empty.nextSibling;
    for (const entry of entries) {
      seen.add(entry.key);
      let item = this.nodes.get(entry.key);
      if (!item) {
        item = { node: el("div"), rev: -1 };
        this.nodes.set(entry.key, item);
      }
      if (item.rev !== entry.rev) {
        this.drawEntry(item.node, entry);
        item.rev = entry.rev;
      }
      if (item.node !== cursor) this.list.insertBefore(item.node, cursor);
      else cursor = cursor.nextSibling;
    }
    for (const [key, item] of this.nodes) {
      if (!seen.has(key)) {
        item.node.remove();
        this.nodes.delete(key);
      }
    }
    if (nearEnd) this.scrollToEnd();
  }

  drawEntry(node, entry) {
    const { t } = this;
    const role = ["user", "assistant", "agent", "system", "notice"].includes(entry.role) ? entry.role : "system";
    node.className = `sb-msg sb-msg--${role}`;
    node.dataset.key = entry.key;
    if (entry.id) node.dataset.messageId = entry.id;
    else delete node.dataset.messageId;
    if (entry.seq != null) node.dataset.seq = String(entry.seq);
    else delete node.dataset.seq;
    node.dataset.status = entry.status === "local" ? entry.localState || "local" : entry.status;
    if (entry.phase) node.dataset.phase = entry.phase;
    else delete node.dataset.phase;
    node.replaceChildren();

    const lang = langTag(entry.language);
    if (role === "system" || role === "notice") {
      const p = el("p", "sb-notice-text");
      if (role === "notice") p.prepend(icon("alert", "sb-icon sb-notice-icon"));
      p.append(role === "notice" ? this.say(entry.text) : entry.text);
      if (role === "system" && lang) p.lang = lang;
      node.appendChild(p);
      return;
    }

    const author = role === "agent" ? entry.author_name || "" : "";
    if (role === "agent") {
      const who = el("div", "sb-msg__author");
      who.append(this.avatar(author), el("span", "sb-msg__name", author ? this.format(t.agentNamed, { name: author }) : t.agent));
      node.appendChild(who);
    }

    const bubble = el("div", "sb-bubble");
    if (lang) bubble.lang = lang;
    const who = role === "user" ? t.you : role === "agent" ? author || t.agent : t.assistant;
    const prefix = visuallyHidden(`${who}: `);
    if (lang) prefix.lang = t._lang;
    bubble.appendChild(prefix);
    if (role === "user") {
      bubble.appendChild(el("div", "sb-plain", entry.text));
    } else if (entry.phase === "waiting" && !entry.text) {
      bubble.classList.add("sb-bubble--typing");
      bubble.appendChild(this.typingDots());
    } else {
      const body = el("div", "sb-md");
      body.appendChild(renderMarkdown(entry.text));
      bubble.appendChild(body);
      if (entry.phase === "streaming" || entry.phase === "gap" || entry.phase === "waiting") {
        bubble.appendChild(this.typingDots(true));
      }
    }
    const streaming = entry.status === "streaming";
    node.setAttribute("aria-busy", streaming ? "true" : "false");
    const emptyFailed = entry.status === "failed" && !entry.text;
    if (!emptyFailed) node.appendChild(bubble);

    if (role === "assistant" && entry.sources.length && !streaming) node.appendChild(this.sources(entry.sources));

    if (entry.status === "failed") node.appendChild(this.notice(t.replyFailed));
    if (entry.status === "local" && entry.localState === "sending" && !entry.notice) {
      node.appendChild(el("p", "sb-msg__state", t.sending));
    }
    if (entry.notice) {
      const notice = this.notice(this.say(entry.notice.text));
      if (entry.notice.retry) {
        const retry = el("button", "sb-link-button", t.retry);
        retry.type = "button";
        retry.addEventListener("click", () => this.o.onRetry(entry.client_id));
        notice.lastChild.append(" ", retry);
      }
      node.appendChild(notice);
    }
  }

  typingDots(inline = false) {
    const wrap = el("span", inline ? "sb-typing sb-typing--inline" : "sb-typing");
    wrap.setAttribute("role", "img");
    wrap.setAttribute("aria-label", this.t.typing);
    for (let i = 0; i < 3; i += 1) wrap.appendChild(el("span", "sb-typing__dot"));
    return wrap;
  }

  notice(text) {
    const p = el("p", "sb-msg__notice");
    p.appendChild(icon("alert", "sb-icon sb-notice-icon"));
    p.appendChild(el("span", null, text));
    return p;
  }

  /** Citations under an answer, compact: "Sources: [1] Title  [2] Title". */
  sources(sources) {
    const { t } = this;
    const box = el("div", "sb-sources");
    box.setAttribute("role", "group");
    box.setAttribute("aria-label", t.sources);
    box.appendChild(el("span", "sb-sources__label", t.sourcesLead));
    const list = el("ol", "sb-sources__list");
    const seen = new Set();
    let number = 0;
    for (const source of sources) {
      if (number >= 10) break;
      if (!source || typeof source !== "object") continue;
      // Only http(s) becomes a link: no javascript:, data:, mailto: or relative URLs.
      const checked = safeUrl(typeof source.url === "string" ? source.url : "");
      const href = checked && /^https?:/i.test(checked) ? checked : null;
      const named = typeof source.title === "string" ? source.title : "";
      const title = (named.trim() ? named : href || "").replace(/\s+/g, " ").trim().slice(0, 200);
      if (!title) continue;
      const dedupe = href || `title:${title}`;
      if (seen.has(dedupe)) continue;
      seen.add(dedupe);
      number += 1;
      const li = el("li", "sb-sources__item");
      li.appendChild(el("span", "sb-sources__num", `[${number}]`));
      li.append("\u00a0");
      if (href) {
        const a = makeLink(document, href);
        a.textContent = title;
        a.title = href;
        li.appendChild(a);
      } else {
        li.appendChild(el("span", "sb-sources__title", title));
      }
      list.appendChild(li);
    }
    if (!number) return document.createDocumentFragment();
    box.appendChild(list);
    return box;
  }
}
