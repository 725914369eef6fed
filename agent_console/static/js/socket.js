// A websocket that reconnects by itself, with a fresh one-time ticket each time.
//
// Status goes "connecting" -> "open" -> ("reconnecting" -> "open")*; "denied" when
// the server will not have us (signed out, wrong role). A connection that falls
// silent for `silentMs` is treated as dropped: a dead network rarely says so.

import { api } from "./api.js";

export class LiveSocket {
  constructor(path, { onMessage, onStatus, silentMs = 30000, pingMs = 0 }) {
    this.path = path;
    this.onMessage = onMessage;
    this.onStatus = onStatus;
    this.silentMs = silentMs;
    this.pingMs = pingMs;
    this.ws = null;
    this.attempt = 0;
    this.stopped = false;
    this.lastHeard = 0;
    this.seq = 0;
    this.pending = new Map();
  }

  start() {
    this.stopped = false;
    this.watchdog = setInterval(() => this.check(), 1000);
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearInterval(this.watchdog);
    clearTimeout(this.retryTimer);
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close();
  }

  async connect() {
    if (this.stopped) return;
    this.onStatus(this.attempt === 0 ? "connecting" : "reconnecting");
    let ticket;
    try {
      ticket = (await api("/api/v1/ws-ticket", { method: "POST" })).ticket;
    } catch (e) {
      if (e.status === 401 || e.status === 403) {
        this.onStatus("denied", e);
        return;
      }
      this.retry();
      return;
    }
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const url = `${scheme}://${location.host}${this.path}?ticket=${encodeURIComponent(ticket)}`;
    const ws = new WebSocket(url);
    this.ws = ws;
    ws.onopen = () => {
      this.attempt = 0;
      this.lastHeard = Date.now();
      this.lastPing = Date.now();
      this.onStatus("open");
    };
    ws.onmessage = (event) => {
      this.lastHeard = Date.now();
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      if (this.settle(message)) return;
      this.onMessage(message);
    };
    ws.onclose = () => {
      if (this.ws === ws) this.dropped();
    };
  }

  // The connection is gone (closed, or silent too long): say so and try again.
  dropped() {
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onclose = null;
      ws.onmessage = null;
      ws.close();
    }
    for (const { reject } of this.pending.values()) reject(new Error("disconnected"));
    this.pending.clear();
    if (this.stopped) return;
    this.onStatus("reconnecting");
    this.retry();
  }

  retry() {
    clearTimeout(this.retryTimer);
    const base = Math.min(10000, 400 * 2 ** this.attempt);
    this.attempt += 1;
    this.retryTimer = setTimeout(() => this.connect(), base * (0.8 + Math.random() * 0.4));
  }

  check() {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    if (Date.now() - this.lastHeard > this.silentMs) {
      this.dropped();
      return;
    }
    if (this.pingMs && Date.now() - this.lastPing > this.pingMs) {
      this.lastPing = Date.now();
      this.request({ type: "ping" }).catch(() => {});
    }
  }

  get isOpen() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  // Send a message with an id; resolves with its ack, rejects with its error.
  request(message, timeoutMs = 8000) {
    if (!this.isOpen) return Promise.reject(new Error("disconnected"));
    const id = `m${++this.seq}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error("timeout"));
      }, timeoutMs);
      this.pending.set(id, {
        resolve: (v) => { clearTimeout(timer); resolve(v); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      });
      this.ws.send(JSON.stringify({ ...message, id }));
    });
  }

  settle(message) {
    const id = message.id ?? message.event_id;
    if ((message.type !== "ack" && message.type !== "error") || !this.pending.has(id)) {
      return false;
    }
    const { resolve, reject } = this.pending.get(id);
    this.pending.delete(id);
    if (message.type === "ack") resolve(message);
    else reject(Object.assign(new Error(message.message), { code: message.code, reason: message.reason }));
    return true;
  }
}
