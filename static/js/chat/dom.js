// Small DOM and text helpers shared by the chat modules.

const SVG_NS = "http://www.w3.org/2000/svg";

/** Create an element. props: class, text, dataset, on<event> handlers, other attributes (true = empty). */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** An icon from the page's SVG sprite. */
export function icon(name, className = "icon") {
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("class", className);
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  const use = document.createElementNS(SVG_NS, "use");
  use.setAttribute("href", `#icon-${name}`);
  svg.append(use);
  return svg;
}

/** A button showing only an icon, named for assistive technology by `label`. */
export function iconButton(name, label, props = {}) {
  return h(
    "button",
    { type: "button", class: "icon-btn", "aria-label": label, title: label, ...props },
    icon(name),
  );
}

/** Length in Unicode code points: what the protocol's offsets count (Python's len). */
export function codePoints(text) {
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const d = text.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) i++;
    }
    n++;
  }
  return n;
}

/** The text from code point `start` on. */
export function sliceCodePoints(text, start) {
  if (start <= 0) return text;
  return Array.from(text).slice(start).join("");
}

export function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

const toastBox = () => document.querySelector(".live-toasts");

/** A short message at the bottom of the screen, read out politely. */
export function toast(text, kind = "info") {
  const box = toastBox();
  if (!box) return;
  const item = h("p", { class: `live-toast live-toast-${kind}`, text });
  box.append(item);
  setTimeout(() => item.remove(), 5000);
}

/** A toast with an Undo button; `undo` runs at most once. */
export function undoToast(text, undo, ms = 10000) {
  const box = toastBox();
  if (!box) return;
  let timer = null;
  const button = h("button", { type: "button", class: "live-toast-action", text: "Undo" });
  const item = h("div", { class: "live-toast live-toast-undo" }, h("span", { text }), button);
  button.addEventListener("click", async () => {
    clearTimeout(timer);
    button.disabled = true;
    item.remove();
    try {
      await undo();
    } catch (error) {
      toast(error.message, "error");
    }
  });
  box.append(item);
  timer = setTimeout(() => item.remove(), ms);
}

/** A fragment from server-built snippet HTML (escaped text and <mark> only). Anything else: plain text. */
export function markedFragment(html, fallback) {
  const template = document.createElement("template");
  template.innerHTML = html || "";
  const safe = [...template.content.querySelectorAll("*")].every((el) => el.tagName === "MARK" && !el.attributes.length);
  if (!safe || !template.content.textContent) {
    const text = safe ? fallback : template.content.textContent;
    return document.createTextNode(text || fallback);
  }
  return template.content;
}

export function isMac() {
  return /Mac|iPhone|iPad/.test(navigator.platform || navigator.userAgent);
}

/** True when the keyboard focus is somewhere text is typed. */
export function isTyping(target) {
  const el = target instanceof Element ? target : null;
  if (!el) return false;
  return el.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(el.tagName);
}

const numberFormat = new Intl.NumberFormat(undefined);
export const formatInt = (n) => numberFormat.format(n);
