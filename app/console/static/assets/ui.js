// Small DOM helpers the pages share: elements, toasts, dialogs, thumbnails, drop zones, pagers.

import { thumbnail } from "./api.js";

/** el("div.card", {onclick}, child, "text", ...): an element with classes, props and children. */
export function el(spec, props = {}, ...children) {
  const [tag, ...classes] = spec.split(".");
  const node = document.createElement(tag || "div");
  if (classes.length) node.className = classes.join(" ");
  for (const [key, value] of Object.entries(props)) {
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "style") Object.assign(node.style, value); // CSSOM: the CSP bars style=""
    else if (value === true) node.setAttribute(key, "");
    else if (value !== false && value !== undefined && value !== null) node.setAttribute(key, value);
  }
  node.append(...children.flat(Infinity).filter((child) => child !== null && child !== undefined));
  return node;
}

export function pageHeader(title, subtitle, ...actions) {
  return el("header.page-head", {},
    el("div", {}, el("h1", {}, title), el("p.muted", {}, subtitle)),
    el("div.actions", {}, ...actions));
}

const MAX_TOASTS = 3;

export function toast(message, kind = "info") {
  const node = el(`div.toast.${kind}`, { role: kind === "error" ? "alert" : "status" }, message);
  const toasts = document.getElementById("toasts");
  toasts.append(node);
  while (toasts.children.length > MAX_TOASTS) toasts.firstChild.remove();
  setTimeout(() => node.remove(), kind === "error" ? 8000 : 3000);
}

/** What went wrong, as the API said it (`status` and `reason`), or the browser's own words. */
export function describe(error) {
  return error.status ? (error.reason ? `${error.status}: ${error.reason}` : error.status)
    : String(error.message || error);
}

export function fail(error) {
  toast(describe(error), "error");
}

/** Resolve true when the user confirms `text` (a modal dialog: nothing is deleted by accident). */
export function confirmDelete(title, text, okLabel = "Delete") {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-ok").textContent = okLabel;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}

/** Resolve the text entered (null when cancelled). */
export function promptText(title, label, value = "") {
  const dialog = document.getElementById("prompt");
  const input = document.getElementById("prompt-input");
  document.getElementById("prompt-title").textContent = title;
  document.getElementById("prompt-label").textContent = label;
  input.value = value;
  dialog.returnValue = "";
  dialog.showModal();
  input.select();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      const text = input.value.trim();
      resolve(dialog.returnValue === "ok" && text ? text : null);
    }, { once: true });
  });
}

/** A face thumbnail that fills in when loaded; a placeholder for none (or no face at all). */
export function faceThumb(faceId, size = "md") {
  const node = el(`div.thumb.thumb-${size}.placeholder`, { title: faceId || "no face" });
  if (!faceId) return node;
  thumbnail(faceId).then((url) => {
    if (!url) return;
    node.classList.remove("placeholder");
    node.append(el("img", { src: url, alt: "face" }));
  }, () => node.classList.add("broken"));
  return node;
}

/** A drop zone with a file picker; calls onFiles(File[]) with the images chosen. */
export function dropZone(label, onFiles, { multiple = false } = {}) {
  const input = el("input", { type: "file", accept: "image/*", multiple, hidden: true,
    onchange: () => { if (input.files.length) onFiles([...input.files]); input.value = ""; } });
  const zone = el("label.dropzone", {},
    input,
    el("span.dropzone-icon", { "aria-hidden": "true" }),
    el("strong", {}, label),
    el("span.muted.small", {}, "Drop a photo here or click to choose (JPG, PNG, BMP, GIF, TIFF, WebP; 5 MiB)"));
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    const files = [...event.dataTransfer.files].filter((file) => file.type.startsWith("image/"));
    if (files.length) onFiles(multiple ? files : files.slice(0, 1));
  });
  return zone;
}

/** "Previous / rows a-b / Next" over a listing read `size` rows a page (`more`: another follows). */
export function pager(page, size, shown, more, onPage) {
  return el("div.pager", {},
    el("button.ghost.small", { disabled: page === 0, onclick: () => onPage(page - 1) }, "‹ Previous"),
    el("span.muted.small", {}, shown ? `${page * size + 1}–${page * size + shown}` : "none"),
    el("button.ghost.small", { disabled: !more, onclick: () => onPage(page + 1) }, "Next ›"));
}

export function busy(button, promise) {
  button.disabled = true;
  button.classList.add("loading");
  return promise.finally(() => { button.disabled = false; button.classList.remove("loading"); });
}

/** Indented JSON with innermost number arrays (landmark points) on one line each. */
export function prettyJson(value) {
  return JSON.stringify(value, null, 2)
    .replace(/\[\s+([-\d.e+,\s]+?)\s+\]/g, (_, inner) => `[${inner.split(/,\s*/).join(", ")}]`);
}

export function percent(value) {
  return `${Math.round(value * 100)}%`;
}
