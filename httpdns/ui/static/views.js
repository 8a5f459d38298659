// Small DOM helpers: elements built node by node (never from HTML text, so no registry
// value can inject markup), split bars and a confirmation dialog.

/** An element: h("button", {type: "button", onclick: f}, "text", child...). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function pct(x) { return `${(Math.round(x * 1000) / 10).toString()} %`; }

/** Shares {dc: fraction} as one horizontal bar with an accessible description. */
export function bar(shares, order, label) {
  // Datacenters always in the same order (and colour), "none" (answered empty) last.
  const rank = (dc) => (dc === "none" ? 1e9 : order.indexOf(dc) < 0 ? 1e8 : order.indexOf(dc));
  const entries = Object.entries(shares).filter(([, v]) => v > 0).sort((a, b) => rank(a[0]) - rank(b[0]));
  const text = entries.map(([dc, v]) => `${dc} ${pct(v)}`).join(", ") || "nothing";
  const el = h("div", { class: "bar", role: "img", "aria-label": `${label}: ${text}` });
  for (const [dc, v] of entries) {
    const i = order.indexOf(dc);
    const span = h("span", { class: dc === "none" ? "none" : `c${i < 0 ? 3 : i % 4}`, title: `${dc} ${pct(v)}` },
      v >= 0.12 ? `${dc} ${pct(v)}` : "");
    span.style.width = `${v * 100}%`; // CSSOM, allowed by the style-src policy
    el.append(span);
  }
  return el;
}

/** Weights {dc: w} as shares {dc: fraction}. */
export function shares(weights) {
  const total = Object.values(weights).reduce((a, b) => a + b, 0);
  const out = {};
  for (const [dc, w] of Object.entries(weights)) out[dc] = total ? w / total : 0;
  return out;
}

/**
 * A little time chart of percentages: ``series`` [{points: [[t, value 0-100]], cls}] as SVG
 * step lines on one time axis, from the first point to now; ``label`` describes it.
 */
export function chart(series, label) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 100 40");
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("class", "chart");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", label);
  const firsts = series.filter((s) => s.points.length).map((s) => s.points[0][0]);
  if (!firsts.length) return svg;
  const now = Date.now() / 1000;
  const t0 = Math.min(...firsts), span = Math.max(now - t0, 1);
  const x = (t) => ((t - t0) / span) * 100, y = (v) => 39 - v * 0.38;
  for (const { points, cls } of series) {
    if (!points.length) continue;
    // A step line up to now: a share holds until the next change.
    const xy = [];
    points.forEach(([t, v], i) => {
      if (i) xy.push(`${x(t)},${y(points[i - 1][1])}`);
      xy.push(`${x(t)},${y(v)}`);
    });
    xy.push(`100,${y(points[points.length - 1][1])}`);
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", xy.join(" "));
    line.setAttribute("vector-effect", "non-scaling-stroke");
    line.setAttribute("class", cls);
    svg.append(line);
  }
  return svg;
}

/**
 * Ask before a change: the dialog (modal, keyboard-operable, Escape cancels) shows
 * ``body`` and resolves true on Confirm.
 */
export function confirmDialog(title, body) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-title").textContent = title;
  const holder = document.getElementById("confirm-body");
  holder.replaceChildren(...(Array.isArray(body) ? body : [body]));
  const opener = document.activeElement;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      resolve(dialog.returnValue === "ok");
      if (opener && opener.focus) opener.focus();
    }, { once: true });
    dialog.returnValue = "cancel";
    dialog.showModal();
    document.getElementById("confirm-ok").focus();
  });
}
