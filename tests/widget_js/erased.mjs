// The widget's protocol module under Node: a stored session, then an `erased` frame (on an open
// socket, or answering the hello of an erased visitor's token). Prints a JSON report.
import { SessionStore, WidgetConnection } from "../../static/widget/protocol.js";

const KEY = "pk_test";
const stored = {
  visitor_token: "token-of-the-erased-visitor",
  conversation_id: "c-1",
  messages: [{ id: "m1", seq: 1, role: "user", text: "my parcel", status: "complete" }],
  outbox: [],
};

class FakeStorage {
  constructor() { this.items = new Map(); }
  getItem(name) { return this.items.has(name) ? this.items.get(name) : null; }
  setItem(name, value) { this.items.set(name, String(value)); }
  removeItem(name) { this.items.delete(name); }
}

const sockets = [];
class FakeSocket {
  constructor(url) {
    this.url = url;
    this.sent = [];
    this.closed = null;
    sockets.push(this);
    queueMicrotask(() => this.onopen?.());
  }
  send(data) { this.sent.push(JSON.parse(data)); }
  close(code) { this.closed = code; }
  receive(frame) { this.onmessage?.({ data: JSON.stringify(frame) }); }
}

const tick = () => new Promise((resolve) => setTimeout(resolve, 0));

async function run(erasedFrame, { welcomeFirst }) {
  sockets.length = 0;
  const storage = new FakeStorage();
  storage.setItem(`supportbot.widget.v1.${KEY}`, JSON.stringify(stored));
  let resets = 0;
  const connection = new WidgetConnection({
    url: "ws://test/ws/widget/",
    widgetKey: KEY,
    locale: "en",
    store: new SessionStore(KEY, storage),
    WebSocketImpl: FakeSocket,
    on: { reset: () => { resets += 1; } },
  });
  connection.start();
  await tick();
  const firstHello = sockets[0].sent[0];
  if (welcomeFirst) {
    sockets[0].receive({ type: "welcome", visitor_token: "t2", conversation_id: "c-1", seq: 1, messages: [] });
  }
  sockets[0].receive(erasedFrame);
  await tick();
  const last = sockets[sockets.length - 1];
  return {
    firstHello,
    sockets: sockets.length,
    firstClosed: sockets[0].closed,
    lastHello: last.sent[0] || null,
    stored: storage.getItem(`supportbot.widget.v1.${KEY}`),
    shown: connection.cachedMessages().length,
    resets,
  };
}

const report = {
  open: await run({ type: "erased", conversation_id: "c-1" }, { welcomeFirst: true }),
  atHello: await run({ type: "erased", conversation_id: "c-1" }, { welcomeFirst: false }),
  other: await run({ type: "erased", conversation_id: "c-2" }, { welcomeFirst: true }),
};
console.log(JSON.stringify(report));
process.exit(0);
