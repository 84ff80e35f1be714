// Annotate page: the feedback panel (_feedback.html) — issue tags need no script;
// this marks tagged spans and starts a better response from a shown one.
// <kbd>F</kbd> opens the panel. Comparisons are swapped in by htmx (and shown
// from the page by annotate.js), so everything works by delegation.
(function () {
  "use strict";

  var UI_TEXT_EN = {
    span_empty: "Select some words in the box first.",
    span_remove: "Remove",
    rewrite_replace: "Replace what you wrote with response %(label)s?",
  };
  function uiText(key, values) {
    return window.prefloopText ? window.prefloopText(key, values || {}, UI_TEXT_EN[key]) : UI_TEXT_EN[key];
  }

  function texts(panel) {
    try {
      return JSON.parse(panel.getAttribute("data-texts") || "{}");
    } catch (error) {
      return {};
    }
  }

  function label(position) {
    return String.fromCharCode(65 + Number(position));
  }

  // The box shows a response's text; the browser turns its line ends into "\n"
  // and counts in UTF-16 units, while the server counts code points in the
  // stored text. This walks both to turn a position in the box into one in the text.
  function codePointOffset(raw, boxIndex) {
    var i = 0;
    var j = 0;
    var points = 0;
    while (j < boxIndex && i < raw.length) {
      var c = raw.charCodeAt(i);
      if (c === 13 && raw.charCodeAt(i + 1) === 10) {
        i += 2; // "\r\n" is one "\n" in the box, two code points in the text
        j += 1;
        points += 2;
      } else if (c >= 0xd800 && c <= 0xdbff && i + 1 < raw.length) {
        i += 2; // a character outside the BMP: two units, one code point
        j += 2;
        points += 1;
      } else {
        i += 1;
        j += 1;
        points += 1;
      }
    }
    return points;
  }

  function setUp(root) {
    (root || document).querySelectorAll(".span-marker[hidden]").forEach(function (marker) {
      marker.hidden = false;
      showResponse(marker);
    });
  }

  function showResponse(marker) {
    var panel = marker.closest(".feedback");
    var select = marker.querySelector(".span-response");
    var box = marker.querySelector(".span-source");
    box.value = texts(panel)[select.value] || "";
    // The caret starts at the top (setting the text put it at the end), where a
    // keyboard user begins selecting with Shift and the arrows.
    box.setSelectionRange(0, 0);
    box.scrollTop = 0;
  }

  function spanError(marker, message) {
    var error = marker.querySelector(".span-error");
    error.textContent = message || "";
    error.hidden = !message;
  }

  function addSpan(marker) {
    var panel = marker.closest(".feedback");
    var position = marker.querySelector(".span-response").value;
    var tag = marker.querySelector(".span-tag").value;
    var box = marker.querySelector(".span-source");
    var raw = texts(panel)[position] || "";
    var from = Math.min(box.selectionStart, box.selectionEnd);
    var to = Math.max(box.selectionStart, box.selectionEnd);
    // Spaces at the edges of a selection are not part of what is marked.
    var chosen = box.value.slice(from, to);
    from += chosen.length - chosen.replace(/^\s+/, "").length;
    to -= chosen.length - chosen.replace(/\s+$/, "").length;
    if (to <= from) {
      spanError(marker, uiText("span_empty"));
      box.focus();
      return;
    }
    spanError(marker, "");
    var start = codePointOffset(raw, from);
    var end = codePointOffset(raw, to);
    var value = [position, start, end, tag].join(":");
    var list = marker.querySelector(".span-list");
    if (list.querySelector('input[name="span"][value="' + CSS.escape(value) + '"]')) return;
    var item = document.createElement("li");
    item.className = "span-item";
    var badge = document.createElement("span");
    badge.className = "badge";
    badge.textContent = label(position);
    var tagName = document.createElement("span");
    tagName.className = "tag";
    tagName.textContent = tag;
    var quote = document.createElement("q");
    quote.dir = "auto";
    quote.textContent = Array.from(raw).slice(start, end).join("");
    var remove = document.createElement("button");
    remove.type = "button";
    remove.className = "btn btn-small span-remove";
    remove.textContent = uiText("span_remove");
    var field = document.createElement("input");
    field.type = "hidden";
    field.name = "span";
    field.value = value;
    item.append(badge, " ", tagName, " ", quote, " ", remove, field);
    list.appendChild(item);
    box.setSelectionRange(to, to);
  }

  document.addEventListener("click", function (event) {
    var target = event.target.closest ? event.target : null;
    if (!target) return;
    var add = target.closest(".span-add");
    if (add) {
      addSpan(add.closest(".span-marker"));
      return;
    }
    var remove = target.closest(".span-remove");
    if (remove) {
      var marker = remove.closest(".span-marker");
      var item = remove.closest(".span-item");
      var next = item.nextElementSibling || item.previousElementSibling;
      item.remove();
      // Keep the focus in the list (or on the box when it is empty) for keyboard users.
      var focus = next ? next.querySelector(".span-remove") : marker.querySelector(".span-source");
      if (focus) focus.focus();
      return;
    }
    var from = target.closest(".rewrite-from");
    if (from) {
      var field = from.closest(".rewrite");
      var area = field.querySelector("textarea");
      var position = from.getAttribute("data-position");
      var start = position === "" ? "" : texts(from.closest(".feedback"))[position] || "";
      var written = area.value.trim() && area.value !== area.getAttribute("data-copied");
      if (written && !window.confirm(uiText("rewrite_replace", { label: position === "" ? "—" : label(position) }))) return;
      area.value = start;
      area.setAttribute("data-copied", start);
      field.querySelector('input[name="rewrite_of"]').value = position;
      area.focus();
      area.setSelectionRange(area.value.length, area.value.length);
    }
  });

  // The span box shows a response: it takes a selection, never an edit.
  function isSpanBox(el) {
    return el && el.classList && el.classList.contains("span-source");
  }
  // Words selected: a message about an empty selection no longer applies. Only
  // when something is selected: Chromium queues a "select" event for moving the
  // caret too (focus, setSelectionRange), and one arriving late, after Enter on
  // an empty selection, cleared the message it had just shown.
  document.addEventListener("select", function (event) {
    var box = event.target;
    if (isSpanBox(box) && box.selectionStart !== box.selectionEnd) spanError(box.closest(".span-marker"), "");
  });
  document.addEventListener("beforeinput", function (event) {
    if (isSpanBox(event.target)) event.preventDefault();
  });
  document.addEventListener("input", function (event) {
    if (isSpanBox(event.target)) showResponse(event.target.closest(".span-marker")); // an edit that got through
  });

  document.addEventListener("change", function (event) {
    if (event.target.classList && event.target.classList.contains("span-response")) {
      showResponse(event.target.closest(".span-marker"));
    }
  });

  // A rewrite typed from scratch (or emptied) revises no shown response.
  document.addEventListener("input", function (event) {
    var area = event.target;
    if (!area.closest || !area.closest(".rewrite") || area.tagName !== "TEXTAREA") return;
    if (!area.value.trim()) area.closest(".rewrite").querySelector('input[name="rewrite_of"]').value = "";
  });

  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || event.altKey || event.ctrlKey || event.metaKey) return;
    var target = event.target;
    // Enter in the span box adds the selection (the box is read-only: Enter types nothing there).
    if (event.key === "Enter" && target.classList && target.classList.contains("span-source")) {
      event.preventDefault();
      addSpan(target.closest(".span-marker"));
      return;
    }
    if (event.shiftKey || event.repeat || String(event.key).toLowerCase() !== "f") return;
    var tag = target && target.tagName;
    if (tag === "TEXTAREA" || tag === "SELECT" || (tag === "INPUT" && target.type !== "checkbox" && target.type !== "radio")) {
      return;
    }
    var form = document.getElementById("answer-form");
    var panel = form && form.querySelector("details.feedback");
    if (!panel || form.querySelector('.rank-item[data-card="F"]')) return; // F picks response F in a long list
    event.preventDefault();
    panel.open = !panel.open;
    if (panel.open) {
      var first = panel.querySelector(".feedback-body input:not([type=hidden]), .feedback-body select, .feedback-body textarea, .feedback-body button");
      if (first) first.focus();
      panel.scrollIntoView({ block: "nearest" });
    } else {
      panel.querySelector("summary").focus();
    }
  });

  setUp(document);
  document.addEventListener("htmx:load", function (event) {
    setUp(event.detail && event.detail.elt);
  });
})();
