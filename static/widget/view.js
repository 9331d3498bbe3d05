// The widget's DOM: header, connection status, message list and composer.
// All text goes in through textContent or the safe Markdown renderer; no innerHTML anywhere.

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

export class WidgetView {
  /**
   * options: {t, format, title, subtitle, embedded, maxLength,
   *           onSend(text), onRetry(clientId), onClose(), onStartOver()}
   */
  constructor(root, options) {
    this.root = root;
    this.o = options;
    this.t = options.t;
    this.nodes = new Map(); // entry key -> {node, rev}
    this.statusTimer = null;
    this.build();
  }

  build() {
    const { t } = this;
    this.root.replaceChildren();
    this.root.classList.add("sb-app");

    // Header
    const header = el("header", "sb-header");
    const badge = el("div", "sb-header__badge");
    badge.appendChild(icon("chat"));
    const heading = el("div", "sb-header__text");
    heading.append(el("h1", "sb-title", this.o.title), el("p", "sb-subtitle", this.o.subtitle));
    header.append(badge, heading);
    if (this.o.embedded) {
      const close = el("button", "sb-icon-button sb-close");
      close.type = "button";
      close.setAttribute("aria-label", t.close);
      close.title = t.close;
      close.appendChild(icon("close"));
      close.addEventListener("click", () => this.o.onClose());
      header.appendChild(close);
    }

    // Connection status
    this.status = el("div", "sb-status");
    this.status.setAttribute("role", "status");
    this.status.hidden = true;

    // Message list
    this.list = el("div", "sb-messages");
    this.list.id = "sb-messages";
    this.list.setAttribute("role", "log");
    this.list.setAttribute("aria-live", "polite");
    this.list.setAttribute("aria-label", t.messagesLabel);
    this.list.tabIndex = 0;
    this.empty = el("div", "sb-empty");
    this.empty.append(el("p", "sb-empty__title", t.emptyTitle), el("p", "sb-empty__body", t.emptyBody));
    this.list.appendChild(this.empty);

    // Composer
    this.form = el("form", "sb-composer");
    this.form.noValidate = true;
    const label = el("label", "sb-visually-hidden", t.inputLabel);
    label.htmlFor = "sb-input";
    const row = el("div", "sb-composer__row");
    this.input = el("textarea", "sb-input");
    this.input.id = "sb-input";
    this.input.name = "message";
    this.input.rows = 1;
    this.input.placeholder = t.inputPlaceholder;
    this.input.autocomplete = "off";
    this.input.setAttribute("aria-describedby", "sb-hint sb-counter");
    this.sendButton = el("button", "sb-send");
    this.sendButton.type = "submit";
    this.sendButton.setAttribute("aria-label", t.send);
    this.sendButton.title = t.send;
    this.sendButton.appendChild(icon("send"));
    row.append(this.input, this.sendButton);
    const foot = el("div", "sb-composer__foot");
    this.hint = el("span", "sb-hint", t.keyboardHint);
    this.hint.id = "sb-hint";
    this.counter = el("span", "sb-counter");
    this.counter.id = "sb-counter";
    foot.append(this.hint, this.counter);
    this.form.append(label, row, foot);

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

    this.root.append(header, this.status, this.list, this.form);
    this.updateComposer();
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
      this.counter.textContent = this.o.format(this.t.overLimit, { count: -left });
      this.counter.className = "sb-counter sb-counter--over";
    } else if (left <= Math.min(500, this.o.maxLength / 5)) {
      this.counter.textContent = this.o.format(this.t.charactersLeft, { count: left });
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
    this.root.dataset.connection = state;
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
      if (info.busy) show(this.o.format(t.busy, { seconds }), "warn");
      else if (seconds >= 3) show(this.o.format(t.reconnectingIn, { seconds }), "warn");
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

    if (role === "system" || role === "notice") {
      const p = el("p", "sb-notice-text");
      if (role === "notice") p.prepend(icon("alert", "sb-icon sb-notice-icon"));
      p.append(entry.text);
      node.appendChild(p);
      return;
    }

    if (role === "agent") {
      const who = el("div", "sb-msg__author");
      const avatar = el("span", "sb-avatar");
      avatar.appendChild(icon("person"));
      who.append(avatar, el("span", "sb-msg__name", t.agent));
      node.appendChild(who);
    }

    const bubble = el("div", "sb-bubble");
    bubble.appendChild(visuallyHidden(`${role === "user" ? t.you : role === "agent" ? t.agent : t.assistant}: `));
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
      const notice = this.notice(entry.notice.text);
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

  sources(sources) {
    const box = el("div", "sb-sources");
    box.appendChild(el("p", "sb-sources__label", this.t.sources));
    const list = el("ol", "sb-sources__list");
    for (const source of sources.slice(0, 10)) {
      if (!source || typeof source !== "object") continue;
      const title = String(source.title || source.url || "").trim();
      if (!title) continue;
      const li = el("li", "sb-sources__item");
      const href = safeUrl(String(source.url || ""));
      if (href && /^https?:/.test(href)) {
        const a = makeLink(document, href);
        a.textContent = title;
        li.appendChild(a);
      } else {
        li.textContent = title;
      }
      list.appendChild(li);
    }
    box.appendChild(list);
    return box;
  }
}
