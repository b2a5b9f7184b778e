// The chat websocket: one per tab, reconnecting with exponential backoff and jitter.
//
// States: "connecting" (first attempt), "open" (hello received), "reconnecting" (waiting to retry),
// "offline" (the browser says there is no network). Close code 4401 means "log in again": no retry.
// A ping every 25 s keeps proxies from idling the socket out; a missing pong means a dead link.

const UNAUTHENTICATED = 4401;
const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 15000;
const PING_EVERY_MS = 25000;
const PONG_WITHIN_MS = 10000;

export class Connection {
  /**
   * @param {string} url websocket URL
   * @param {{onFrame: Function, onOpen: Function, onState: Function, onUnauthenticated: Function,
   *          checkAuth: () => Promise<boolean>}} handlers
   */
  constructor(url, handlers) {
    this.url = url;
    this.handlers = handlers;
    this.socket = null;
    this.state = "connecting";
    this.attempt = 0;
    this.retryTimer = null;
    this.pingTimer = null;
    this.pongTimer = null;
    this.stopped = false;
    window.addEventListener("online", () => this.reconnectNow());
    window.addEventListener("offline", () => this.setState("offline"));
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") this.reconnectNow();
    });
  }

  get isOpen() {
    return this.state === "open";
  }

  start() {
    this.connect();
  }

  /** Send a frame; false when the socket isn't open (the caller keeps the user's input). */
  send(frame) {
    if (!this.isOpen || this.socket?.readyState !== WebSocket.OPEN) return false;
    this.socket.send(JSON.stringify(frame));
    return true;
  }

  setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.handlers.onState?.(state);
  }

  connect() {
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    let opened = false;
    const socket = new WebSocket(this.url);
    this.socket = socket;
    socket.addEventListener("open", () => {
      opened = true;
    });
    socket.addEventListener("message", (event) => {
      if (socket !== this.socket) return;
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      if (frame.type === "hello") {
        this.attempt = 0;
        this.setState("open");
        this.startHeartbeat();
        this.handlers.onOpen?.();
        return;
      }
      if (frame.type === "pong") {
        clearTimeout(this.pongTimer);
        return;
      }
      this.handlers.onFrame(frame);
    });
    socket.addEventListener("close", (event) => {
      if (socket !== this.socket) return;
      this.onClosed(event.code, opened);
    });
  }

  async onClosed(code, opened) {
    this.stopHeartbeat();
    this.socket = null;
    if (code === UNAUTHENTICATED) {
      this.stopped = true;
      this.handlers.onUnauthenticated?.();
      return;
    }
    // A refused handshake (an expired session is refused before the socket opens) looks like a network
    // error to the page: ask an HTTP endpoint whether we are still logged in.
    if (!opened && this.handlers.checkAuth && (await this.handlers.checkAuth()) === false) {
      this.stopped = true;
      this.handlers.onUnauthenticated?.();
      return;
    }
    this.scheduleRetry();
  }

  scheduleRetry() {
    if (this.stopped) return;
    this.setState(navigator.onLine === false ? "offline" : "reconnecting");
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** this.attempt);
    const delay = ceiling / 2 + Math.random() * (ceiling / 2); // "equal jitter": spread, never instant
    this.attempt += 1;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  /** Retry at once (network back, tab visible again) if we are waiting to. */
  reconnectNow() {
    if (this.stopped || this.socket || this.retryTimer === null) return;
    this.attempt = 0;
    this.connect();
  }

  startHeartbeat() {
    this.stopHeartbeat();
    this.pingTimer = setInterval(() => {
      if (!this.send({ type: "ping", id: Date.now() })) return;
      clearTimeout(this.pongTimer);
      this.pongTimer = setTimeout(() => this.dropDeadSocket(), PONG_WITHIN_MS);
    }, PING_EVERY_MS);
  }

  stopHeartbeat() {
    clearInterval(this.pingTimer);
    clearTimeout(this.pongTimer);
  }

  /** A socket that stopped answering: forget it now rather than wait for TCP to notice. */
  dropDeadSocket() {
    const socket = this.socket;
    if (!socket) return;
    this.socket = null;
    this.stopHeartbeat();
    try {
      socket.close();
    } catch {
      /* already closing */
    }
    this.scheduleRetry();
  }
}
