// The live agent panel of the conversation page in the admin.
//
// The transcript is rendered by the server; this module connects to the agent websocket
// (ws/agent/conversations/<id>/), appends messages and streamed replies as they arrive, shows
// the conversation's status, and sends the agent's actions: take over, reply, hand back, close.
// Message text is only ever set with textContent.

const ROLE_LABELS = { user: "Visitor", assistant: "Assistant", agent: "Agent", system: "Notice" };
const STATUS_LABELS = {
  bot: "Answered by the assistant",
  waiting_for_agent: "Waiting for an agent",
  with_agent: "With an agent",
  closed: "Closed",
};
const MESSAGE_STATUS_LABELS = { streaming: "Streaming", failed: "Failed" };
const CLOSE_FORBIDDEN = 4403;
const MAX_BACKOFF_MS = 30000;

function pad(n) {
  return String(n).padStart(2, "0");
}

function formatTime(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  return (
    `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`
  );
}

function known(map, value, fallback) {
  return Object.prototype.hasOwnProperty.call(map, value) ? value : fallback;
}

class Transcript {
  constructor(list) {
    this.list = list;
    this.nextIndex = new Map(); // message id -> next reply.delta index expected
  }

  find(id) {
    for (const item of this.list.children) {
      if (item.dataset.messageId === id) return item;
    }
    return null;
  }

  build(id) {
    const item = document.createElement("li");
    item.dataset.messageId = id;
    const meta = document.createElement("div");
    meta.className = "turn-meta";
    const text = document.createElement("div");
    text.className = "turn-text turn-text-live";
    item.append(meta, text);
    return item;
  }

  place(item, seq) {
    const empty = this.list.querySelector(".turn-empty");
    if (empty) empty.remove();
    if (item.parentNode === this.list) return;
    if (seq != null) {
      for (const other of this.list.children) {
        const otherSeq = Number.parseInt(other.dataset.seq || "", 10);
        if (!Number.isNaN(otherSeq) && otherSeq > seq) {
          this.list.insertBefore(item, other);
          return;
        }
      }
    }
    this.list.append(item);
  }

  render(item, message) {
    const role = known(ROLE_LABELS, message.role, "system");
    const status = message.status === "complete" ? "complete" : known(MESSAGE_STATUS_LABELS, message.status, "complete");
    item.className = `turn turn-${role} turn-${status}`;
    if (Number.isInteger(message.seq)) item.dataset.seq = String(message.seq);

    const meta = document.createElement("div");
    meta.className = "turn-meta";
    const roleLabel = document.createElement("span");
    roleLabel.className = "turn-role";
    roleLabel.textContent = ROLE_LABELS[role];
    meta.append(roleLabel);
    if (Number.isInteger(message.seq)) {
      const seq = document.createElement("span");
      seq.className = "turn-seq";
      seq.textContent = `#${message.seq}`;
      meta.append(seq);
    }
    if (typeof message.created_at === "string") {
      const time = document.createElement("time");
      time.dateTime = message.created_at;
      time.textContent = formatTime(message.created_at);
      meta.append(time);
    }
    if (status !== "complete") {
      const statusLabel = document.createElement("span");
      statusLabel.className = "turn-status";
      statusLabel.textContent = MESSAGE_STATUS_LABELS[status];
      meta.append(statusLabel);
    }

    const text = document.createElement("div");
    text.className = "turn-text turn-text-live";
    text.textContent = typeof message.text === "string" ? message.text : "";

    const parts = [meta, text];
    if (Array.isArray(message.sources) && message.sources.length) {
      const sources = document.createElement("ul");
      sources.className = "turn-sources";
      for (const source of message.sources) {
        const entry = document.createElement("li");
        entry.textContent = source && typeof source.title === "string" ? source.title : "";
        sources.append(entry);
      }
      parts.push(sources);
    }
    item.replaceChildren(...parts);
  }

  upsert(message) {
    if (!message || typeof message.id !== "string") return;
    const item = this.find(message.id) || this.build(message.id);
    this.render(item, message);
    this.place(item, Number.isInteger(message.seq) ? message.seq : null);
    if (message.status !== "streaming") this.nextIndex.delete(message.id);
  }

  replyStart(id) {
    let item = this.find(id);
    if (!item) {
      item = this.build(id);
      this.place(item, null);
    }
    if (!item.dataset.seq) {
      this.render(item, { id, role: "assistant", status: "streaming", text: "" });
    } else {
      item.className = "turn turn-assistant turn-streaming";
      item.querySelector(".turn-text").textContent = "";
    }
    this.nextIndex.set(id, 0);
  }

  replyDelta(id, index, text) {
    const expected = this.nextIndex.get(id);
    if (expected === undefined || !Number.isInteger(index) || index < expected) return;
    const item = this.find(id);
    if (!item) return;
    item.querySelector(".turn-text").append(document.createTextNode(String(text)));
    this.nextIndex.set(id, index + 1);
  }

  streamingIds() {
    return [...this.nextIndex.keys()];
  }
}

class AgentPanel {
  constructor(panel, transcript) {
    this.panel = panel;
    this.transcript = transcript;
    this.path = panel.dataset.socketPath;
    this.lastSeq = Number.parseInt(panel.dataset.resumeSeq || "0", 10) || 0;
    // For each reply streaming now: the last seq seen when it started (resume from there).
    this.seqAtStart = new Map();
    this.socket = null;
    this.backoff = 1000;
    this.stopped = false;
    this.replyPending = false;
    this.state = { status: panel.dataset.status, agent: null };
    this.stateReceived = false; // the agent's name comes with the socket's first frame

    this.statusBadge = panel.querySelector('[data-role="status"]');
    this.agentLabel = panel.querySelector('[data-role="agent"]');
    this.connection = panel.querySelector('[data-role="connection"]');
    this.errorLine = panel.querySelector('[data-role="error"]');
    this.textarea = panel.querySelector("textarea");
    this.buttons = {};
    for (const button of panel.querySelectorAll("button[data-action]")) {
      this.buttons[button.dataset.action] = button;
      button.addEventListener("click", () => this.act(button.dataset.action));
    }
    this.textarea.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.altKey && !event.ctrlKey && !event.metaKey && !event.isComposing) {
        event.preventDefault();
        this.act("reply");
      }
    });
    panel.hidden = false;
    this.showState();
  }

  connect() {
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    let resume = this.lastSeq;
    for (const seq of this.seqAtStart.values()) resume = Math.min(resume, seq);
    const url = `${scheme}//${window.location.host}${this.path}?last_seq=${resume}`;
    this.setConnection("Connecting…", false);
    const socket = new WebSocket(url);
    this.socket = socket;
    socket.addEventListener("open", () => {
      this.backoff = 1000;
    });
    socket.addEventListener("message", (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      if (frame && typeof frame === "object") this.handle(frame);
    });
    socket.addEventListener("close", (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.replyPending = false;
      if (event.code === CLOSE_FORBIDDEN) {
        this.stopped = true;
        this.setConnection("You can't work on this conversation here (reload the page to try again).", false);
      } else {
        this.setConnection("Offline: reconnecting…", false);
        window.setTimeout(() => this.connect(), this.backoff);
        this.backoff = Math.min(this.backoff * 2, MAX_BACKOFF_MS);
      }
      this.showState();
    });
  }

  handle(frame) {
    switch (frame.type) {
      case "welcome":
        this.setConnection("Live", true);
        this.setState(frame.conversation);
        if (Array.isArray(frame.messages)) frame.messages.forEach((m) => this.accept(m));
        return;
      case "conversation.updated":
        this.setState(frame.conversation);
        return;
      case "message":
        this.accept(frame.message);
        return;
      case "ack":
        this.accept(frame.message);
        this.replyPending = false;
        this.textarea.value = "";
        this.showError("");
        this.showState();
        return;
      case "reply.start":
        if (typeof frame.message_id === "string") {
          this.transcript.replyStart(frame.message_id);
          if (!this.seqAtStart.has(frame.message_id)) this.seqAtStart.set(frame.message_id, this.lastSeq);
        }
        return;
      case "reply.delta":
        if (typeof frame.message_id === "string") {
          this.transcript.replyDelta(frame.message_id, frame.index, frame.text);
        }
        return;
      case "error":
        if (frame.client_id == null) this.replyPending = false;
        this.showError(typeof frame.detail === "string" ? frame.detail : "Something went wrong.");
        this.showState();
        return;
      default:
        return; // a newer server's frame: ignore
    }
  }

  accept(message) {
    if (!message || typeof message.id !== "string") return;
    this.transcript.upsert(message);
    if (message.status !== "streaming") {
      this.seqAtStart.delete(message.id);
      if (Number.isInteger(message.seq)) this.lastSeq = Math.max(this.lastSeq, message.seq);
    }
  }

  setState(conversation) {
    if (!conversation || typeof conversation !== "object") return;
    this.stateReceived = true;
    this.state = {
      status: known(STATUS_LABELS, conversation.status, this.state.status),
      agent: conversation.agent && typeof conversation.agent.name === "string" ? conversation.agent.name : null,
    };
    this.showState();
  }

  showState() {
    const { status, agent } = this.state;
    this.statusBadge.className = `status-badge status-${status}`;
    this.statusBadge.textContent = STATUS_LABELS[status] || status;
    this.agentLabel.textContent = agent ? `Agent: ${agent}` : "";
    // Keep the page's read-only fields in step with the live state.
    const readonlyStatus = document.querySelector(".field-status .readonly");
    if (readonlyStatus) readonlyStatus.textContent = STATUS_LABELS[status] || status;
    const readonlyAgent = document.querySelector(".field-assigned_agent .readonly");
    if (readonlyAgent && this.stateReceived) readonlyAgent.textContent = agent || "-";
    const live = this.socket !== null && this.socket.readyState === WebSocket.OPEN;
    const open = status !== "closed";
    const enable = {
      take_over: status === "bot" || status === "waiting_for_agent",
      hand_back: status === "with_agent" || status === "waiting_for_agent",
      close: open,
      reply: (status === "with_agent" || status === "waiting_for_agent") && !this.replyPending,
    };
    for (const [action, button] of Object.entries(this.buttons)) {
      button.disabled = !live || !enable[action];
    }
    this.textarea.disabled = !live || !(status === "with_agent" || status === "waiting_for_agent");
  }

  act(action) {
    if (!this.socket || this.socket.readyState !== WebSocket.OPEN) return;
    if (action === "reply") {
      const text = this.textarea.value;
      if (!text.trim() || this.replyPending) return;
      this.replyPending = true;
      this.socket.send(JSON.stringify({ type: "reply", text }));
    } else {
      this.socket.send(JSON.stringify({ type: action }));
    }
    this.showError("");
    this.showState();
  }

  setConnection(text, live) {
    this.connection.textContent = text;
    this.connection.classList.toggle("agent-live", live);
  }

  showError(text) {
    this.errorLine.textContent = text;
  }
}

function start() {
  const panel = document.getElementById("agent-panel");
  const list = document.getElementById("transcript");
  if (!panel || !list || typeof window.WebSocket !== "function") return;
  new AgentPanel(panel, new Transcript(list)).connect();
}

start();
