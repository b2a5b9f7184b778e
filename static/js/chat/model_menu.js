// The model menu: each model a person may pick, once (whichever providers serve it), with its name, a one-line
// description and badges (vision, context size, price per 1M tokens). WAI-ARIA's select-only combobox: the
// button is a `combobox` named "Model" whose text is the chosen model; it opens a `listbox` of `option`s.
// Keys: ↓ ↑ Home End move (and open it), Enter / Space / Tab choose, Esc closes without choosing, typing
// jumps to the next model whose name starts with the letters typed (type-ahead).

import { h } from "./dom.js";

const TYPEAHEAD_MS = 600;

/** "128k context", "1M context", "8,192 context". */
export function contextLabel(tokens) {
  if (!tokens) return "";
  if (tokens >= 1_000_000) return `${+(tokens / 1_000_000).toFixed(1)}M context`;
  if (tokens >= 10_000) return `${Math.round(tokens / 1000)}k context`;
  return `${tokens.toLocaleString("en-US")} context`;
}

/** "$10", "$2.50", "$0.60", "$0.075": cents always shown, more digits only when the price has them. */
function dollars(value) {
  const n = Number(value);
  if (value === null || value === undefined || !Number.isFinite(n)) return null;
  if (Number.isInteger(n)) return `$${n}`;
  const digits = n.toFixed(4).replace(/0+$/, "");
  return `$${digits.split(".")[1].length < 2 ? n.toFixed(2) : digits}`;
}

/** "$2.50 in · $10 out per 1M tokens", or null when the model has no price (a free local one says "Free"). */
export function priceLabel(model) {
  const input = dollars(model.input_price);
  const output = dollars(model.output_price);
  if (input === null || output === null) return null;
  if (input === "$0" && output === "$0") return "Free";
  return `${input} in · ${output} out per 1M tokens`;
}

function badges(model) {
  const out = [];
  if (model.supports_images) out.push(["vision", "Vision"]);
  const context = contextLabel(model.context_window);
  if (context) out.push(["context", context]);
  const price = priceLabel(model);
  if (price) out.push(["price", price]);
  return out;
}

let menuCount = 0;

export class ModelMenu {
  /** `root`: the .model-picker element; `onChange(model)` runs when a person picks another model. */
  constructor(root, { onChange }) {
    this.root = root;
    this.onChange = onChange;
    this.button = root.querySelector('[role="combobox"]');
    this.valueText = root.querySelector(".model-button-text");
    this.listbox = root.querySelector('[role="listbox"]');
    this.models = [];
    this.selectedId = null;
    this.activeIndex = -1;
    this.typed = "";
    this.typedAt = 0;
    this.prefix = `model-option-${++menuCount}-`;

    this.button.addEventListener("click", () => (this.isOpen ? this.close() : this.open()));
    this.button.addEventListener("keydown", (event) => this.onKey(event));
    this.button.addEventListener("blur", (event) => {
      if (!this.root.contains(event.relatedTarget)) this.close();
    });
    // Options are chosen with the pointer on mousedown's click; keep focus on the combobox meanwhile.
    this.listbox.addEventListener("mousedown", (event) => event.preventDefault());
    this.listbox.addEventListener("click", (event) => {
      const option = event.target.closest('[role="option"]');
      if (option) this.choose(Number(option.dataset.index));
    });
    document.addEventListener("pointerdown", (event) => {
      if (this.isOpen && !this.root.contains(event.target)) this.close();
    });
  }

  get isOpen() {
    return this.button.getAttribute("aria-expanded") === "true";
  }

  get selected() {
    return this.models.find((m) => m.id === this.selectedId) || null;
  }

  setModels(models) {
    this.models = models;
    this.listbox.replaceChildren(...models.map((model, index) => this.option(model, index)));
    const none = !models.length;
    this.button.setAttribute("aria-disabled", String(none));
    this.button.tabIndex = none ? -1 : 0;
    if (none) this.valueText.textContent = "No models available";
  }

  option(model, index) {
    // The option is named by all it shows (axe: the visible text must be in the name), the model's name first,
    // then a pause (a hidden comma) and its details: "GPT-4o, OpenAI's flagship… Vision 128k context $2.50…".
    const name = h("span", { class: "model-option-name", text: model.name });
    const pause = h("span", { class: "visually-hidden", text: ", " });
    const description = h("span", { class: "model-option-description", text: model.description || "" });
    const badgeList = h(
      "span",
      { class: "model-option-badges" },
      badges(model).map(([kind, text]) => h("span", { class: `model-badge model-badge-${kind}`, text })),
    );
    const details = h("span", { class: "model-option-details" }, [description, badgeList]);
    const check = h("span", { class: "model-option-check", "aria-hidden": "true", text: "✓" });
    return h(
      "div",
      {
        role: "option",
        id: `${this.prefix}${index}`,
        class: "model-option",
        "aria-selected": "false",
        "data-index": String(index),
      },
      [h("span", { class: "model-option-main" }, [name, pause, details]), check],
    );
  }

  /** Show `id` as the chosen model (no onChange: the app chose it). Unknown ids keep nothing chosen. */
  select(id) {
    this.selectedId = this.models.some((m) => m.id === id) ? id : null;
    const model = this.selected;
    for (const option of this.listbox.children) {
      option.setAttribute("aria-selected", String(this.models[Number(option.dataset.index)]?.id === this.selectedId));
    }
    if (model) {
      this.valueText.textContent = model.name;
      this.button.title = [model.name, model.description].filter(Boolean).join(": ");
    }
  }

  open(index = null) {
    if (!this.models.length) return;
    this.listbox.hidden = false;
    this.button.setAttribute("aria-expanded", "true");
    this.root.classList.add("is-open");
    const current = this.models.findIndex((m) => m.id === this.selectedId);
    this.setActive(index ?? Math.max(current, 0));
  }

  close() {
    if (!this.isOpen) return;
    this.listbox.hidden = true;
    this.button.setAttribute("aria-expanded", "false");
    this.button.removeAttribute("aria-activedescendant");
    this.root.classList.remove("is-open");
    this.activeIndex = -1;
  }

  setActive(index) {
    const count = this.models.length;
    if (!count) return;
    this.activeIndex = Math.min(Math.max(index, 0), count - 1);
    for (const option of this.listbox.children) {
      option.classList.toggle("is-active", Number(option.dataset.index) === this.activeIndex);
    }
    const active = this.listbox.children[this.activeIndex];
    this.button.setAttribute("aria-activedescendant", active.id);
    active.scrollIntoView({ block: "nearest" });
  }

  choose(index) {
    const model = this.models[index];
    this.close();
    this.button.focus();
    if (!model || model.id === this.selectedId) return;
    this.select(model.id);
    this.onChange(model);
  }

  /** Type-ahead: letters typed within TYPEAHEAD_MS add up; the next model whose name starts with them. */
  typeahead(char) {
    const now = Date.now();
    this.typed = now - this.typedAt > TYPEAHEAD_MS ? char : this.typed + char;
    this.typedAt = now;
    const wanted = this.typed.toLocaleLowerCase();
    const start = this.isOpen ? this.activeIndex : this.models.findIndex((m) => m.id === this.selectedId);
    // One letter repeated cycles through the models starting with it; a longer prefix may stay where it is.
    const from = this.typed.length === 1 ? start + 1 : Math.max(start, 0);
    const count = this.models.length;
    for (let step = 0; step < count; step += 1) {
      const index = (from + step) % count;
      if (this.models[index].name.toLocaleLowerCase().startsWith(wanted)) return index;
    }
    return -1;
  }

  onKey(event) {
    if (!this.models.length || event.ctrlKey || event.metaKey) return;
    const open = this.isOpen;
    const key = event.key;
    if (key.length === 1 && key !== " " && !event.altKey) {
      const index = this.typeahead(key);
      if (index >= 0) open ? this.setActive(index) : this.open(index);
      else if (!open) this.open();
      event.preventDefault();
      return;
    }
    if (key === " " && this.typed && Date.now() - this.typedAt < TYPEAHEAD_MS) {
      // A space in the middle of typing a name ("gpt 4") is part of it.
      const index = this.typeahead(" ");
      if (index >= 0) this.setActive(index);
      event.preventDefault();
      return;
    }
    this.typed = ""; // any other key ends a type-ahead word
    if (!open) {
      const opens = { ArrowDown: null, ArrowUp: null, Enter: null, " ": null, Home: 0, End: this.models.length - 1 };
      if (key in opens) {
        event.preventDefault();
        this.open(opens[key]);
      }
      return;
    }
    switch (key) {
      case "ArrowDown":
        if (event.altKey) return;
        this.setActive(this.activeIndex + 1);
        break;
      case "ArrowUp":
        if (event.altKey) {
          this.choose(this.activeIndex);
          break;
        }
        this.setActive(this.activeIndex - 1);
        break;
      case "Home":
        this.setActive(0);
        break;
      case "End":
        this.setActive(this.models.length - 1);
        break;
      case "PageDown":
        this.setActive(this.activeIndex + 5);
        break;
      case "PageUp":
        this.setActive(this.activeIndex - 5);
        break;
      case "Enter":
      case " ":
        this.choose(this.activeIndex);
        break;
      case "Tab":
        this.choose(this.activeIndex);
        return; // focus moves on as usual
      case "Escape":
        this.close();
        break;
      default:
        return;
    }
    event.preventDefault();
    event.stopPropagation(); // Esc must not also close a dialog or the sidebar
  }
}
