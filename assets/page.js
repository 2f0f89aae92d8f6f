// Accessibility patches on Gradio's own markup, applied as the page changes (docs/accessibility.md lists them):
// - an empty image/plot/file box is a <div aria-label="Empty value"> without a role, and ARIA forbids aria-label on a
//   plain div (axe: aria-prohibited-attr): give it role="img" so the label is announced;
// - a lesson panel that scrolls must be reachable by keyboard (axe: scrollable-region-focusable): tabindex=0;
// - so must a display formula too wide for its column, which scrolls in its own box (style.css): tabindex=0 while
//   it overflows (checked again when the page changes, on resize and on clicks, e.g. a tab opened);
// - so must a table's scrolling box (Gradio's .virtual-table-viewport), which on a phone scrolls sideways. It sits in
//   the table's role="grid", where a focusable box breaks the grid's structure (axe: aria-required-children), and an
//   empty table has no focusable cell: its first header takes tabindex=0 while it overflows (the arrow keys then walk
//   the headers, and the box scrolls with them).
(() => {
  let queued = false;
  const fix = () => {
    queued = false;
    document.querySelectorAll("div.empty[aria-label]:not([role])").forEach((el) => el.setAttribute("role", "img"));
    document.querySelectorAll(".pg-lesson-text:not([tabindex])").forEach((el) => {
      el.setAttribute("tabindex", "0");
      el.setAttribute("role", "region");
      el.setAttribute("aria-label", "Lesson text");
    });
    document.querySelectorAll(".pg-lesson-text .katex-display").forEach((el) => {
      const wide = el.scrollWidth > el.clientWidth;
      if (wide && !el.hasAttribute("tabindex")) {
        el.setAttribute("tabindex", "0");
        el.dataset.pgScroll = "1";
      } else if (!wide && el.dataset.pgScroll) {
        el.removeAttribute("tabindex");
        delete el.dataset.pgScroll;
      }
    });
    document.querySelectorAll(".virtual-table-viewport").forEach((el) => {
      const th = el.querySelector("th");
      if (!th) return;
      const scrolls = el.scrollWidth > el.clientWidth + 1 || el.scrollHeight > el.clientHeight + 1;
      const cell = el.querySelector("[tabindex='0']:not([data-pg-scroll])");  // Gradio's own focusable cell
      if (scrolls && !cell && th.tabIndex < 0) {
        th.tabIndex = 0;
        th.dataset.pgScroll = "1";
      } else if ((!scrolls || cell) && th.dataset.pgScroll) {
        th.tabIndex = -1;
        delete th.dataset.pgScroll;
      }
    });
  };
  const schedule = () => { if (!queued) { queued = true; requestAnimationFrame(fix); } };
  new MutationObserver(schedule).observe(document.documentElement, { childList: true, subtree: true });
  window.addEventListener("resize", schedule);
  document.addEventListener("click", schedule);
  schedule();
})();

// Attention maps (playground/ui/attention_view.py): hover or arrow keys read a cell; a thumbnail shows its map.
(() => {
  const cellAt = (cells, x, y) => {
    const fig = cells.closest(".pg-attn-map");
    const n = Number(fig.dataset.t);
    const r = cells.querySelector("img").getBoundingClientRect();
    const col = Math.floor(((x - r.left) / r.width) * n);
    const row = Math.floor(((y - r.top) / r.height) * n);
    return row >= 0 && row < n && col >= 0 && col < n ? [row, col] : null;
  };
  const show = (fig, row, col) => {
    const n = Number(fig.dataset.t);
    const tokens = JSON.parse(fig.dataset.tokens);
    fig.dataset.row = row;
    fig.dataset.col = col;
    const hl = fig.querySelector(".pg-attn-hl");
    hl.hidden = false;
    hl.style.top = `${(100 * row) / n}%`;
    hl.style.left = `${(100 * col) / n}%`;
    fig.querySelectorAll(".pg-attn-rows span, .pg-attn-cols span").forEach((s) => s.classList.remove("pg-on"));
    fig.querySelectorAll(".pg-attn-rows span")[row].classList.add("pg-on");
    fig.querySelectorAll(".pg-attn-cols span")[col].classList.add("pg-on");
    const q = `query “${tokens[row]}” (token ${row + 1})`;
    const k = `key “${tokens[col]}” (token ${col + 1})`;
    const out = fig.querySelector(".pg-attn-readout");
    if (col > row) {
      out.textContent = `${q} → ${k}: masked, a token cannot look at a later one`;
    } else {
      const w = Number(fig.dataset.w.split(",")[row * n + col]) / 10000;
      out.textContent = `${q} → ${k}: weight ${w.toFixed(4)}`;
    }
    out.dataset.weight = col > row ? "" : String(Number(fig.dataset.w.split(",")[row * n + col]) / 10000);
  };
  document.addEventListener("mousemove", (e) => {
    const cells = e.target.closest && e.target.closest(".pg-attn-cells");
    if (!cells) return;
    const at = cellAt(cells, e.clientX, e.clientY);
    if (at) show(cells.closest(".pg-attn-map"), at[0], at[1]);
  });
  document.addEventListener("keydown", (e) => {
    const cells = e.target.closest && e.target.closest(".pg-attn-cells");
    const moves = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
    if (!cells || !moves[e.key]) return;
    e.preventDefault();
    const fig = cells.closest(".pg-attn-map");
    const n = Number(fig.dataset.t);
    const row = Math.min(n - 1, Math.max(0, Number(fig.dataset.row ?? 0) + moves[e.key][0]));
    const col = Math.min(n - 1, Math.max(0, Number(fig.dataset.col ?? 0) + moves[e.key][1]));
    show(fig, row, col);
  });
  document.addEventListener("click", (e) => {
    const btn = e.target.closest && e.target.closest(".pg-attn-thumb");
    if (!btn) return;
    const view = btn.closest(".pg-attn");
    view.querySelectorAll(".pg-attn-map").forEach((f) => { f.hidden = f.id !== btn.dataset.target; });
    view.querySelectorAll(".pg-attn-thumb").forEach((b) => b.setAttribute("aria-pressed", String(b === btn)));
  });
})();

// Cross-entropy chips: clicking a token (or Enter on it) lists the model's top guesses at that position.
(() => {
  const open = (chip) => {
    const box = chip.closest(".pg-ce-chips").parentElement.querySelector(".pg-ce-guesses");
    if (!box) return;
    const guesses = JSON.parse(chip.dataset.top);
    const target = chip.textContent;
    box.querySelector(".pg-ce-guesses-title").textContent =
      `Before “${target}” the model guessed (p(target) = ${Number(chip.dataset.p).toFixed(4)}):`;
    const list = box.querySelector("ol");
    list.replaceChildren(...guesses.map(([piece, p]) => {
      const li = document.createElement("li");
      li.className = "pg-ce-guess" + (piece === target ? " pg-ce-hit" : "");
      const bar = document.createElement("span");
      bar.className = "pg-ce-guess-bar";
      bar.style.width = `${Math.max(1, 100 * p)}%`;
      const label = document.createElement("code");
      label.textContent = piece;
      const value = document.createElement("span");
      value.className = "pg-ce-guess-p";
      value.textContent = p.toFixed(4);
      li.append(label, bar, value);
      return li;
    }));
    document.querySelectorAll(".pg-ce-tok.pg-ce-on").forEach((c) => c.classList.remove("pg-ce-on"));
    chip.classList.add("pg-ce-on");
  };
  document.addEventListener("click", (e) => {
    const chip = e.target.closest && e.target.closest(".pg-ce-tok[data-top]");
    if (chip) open(chip);
  });
  document.addEventListener("keydown", (e) => {
    const chip = e.target.closest && e.target.closest(".pg-ce-tok[data-top]");
    if (chip && (e.key === "Enter" || e.key === " ")) { e.preventDefault(); open(chip); }
  });
})();

// Start page: a stage of the pipeline picture opens its tab (as its step button below does); Enter works too.
(() => {
  const go = (stage) => {
    const btn = document.getElementById(`start-go-${stage.dataset.tab}`);
    if (btn) btn.click();
  };
  document.addEventListener("click", (e) => {
    const stage = e.target.closest && e.target.closest(".pg-pipeline .pg-stage");
    if (stage) go(stage);
  });
  document.addEventListener("keydown", (e) => {
    const stage = e.target.closest && e.target.closest(".pg-pipeline .pg-stage");
    if (stage && (e.key === "Enter" || e.key === " ")) { e.preventDefault(); go(stage); }
  });
})();

// Tokenize: hovering a chip lights its stretch of the text above the chips, and the other way round (data-k).
(() => {
  const link = (e, on) => {
    const el = e.target.closest && e.target.closest(".pg-tok-text .pg-span, .pg-tokens > [data-k]");
    if (!el) return;
    const block = el.closest(".pg-tok-text, .pg-tokens").parentElement;
    block.querySelectorAll(`[data-k="${el.dataset.k}"]`).forEach((x) => x.classList.toggle("pg-lit", on));
  };
  document.addEventListener("mouseover", (e) => link(e, true));
  document.addEventListener("mouseout", (e) => link(e, false));
})();
