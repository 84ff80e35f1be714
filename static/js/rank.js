// Listwise ranking: drag (SortableJS), keyboard and tie toggles drive the
// "Place" selects, which are what the form submits. Without this file the
// selects alone still make a complete answer (equal places are a tie).
(function () {
  "use strict";

  function isTyping(el) {
    if (!el || !el.tagName) return false;
    var tag = el.tagName;
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || el.isContentEditable;
  }

  function rankList() {
    return document.querySelector("#answer-form .rank-list");
  }

  function items(list) {
    return Array.prototype.slice.call(list.querySelectorAll(":scope > .rank-item"));
  }

  function label(item) {
    return item.getAttribute("data-card");
  }

  // Announcements in the page's language (#ui-text, from the server), English without it.
  var UI_TEXT_EN = {
    moved: "Response %(label)s moved to place %(place)s.",
    tied: "Response %(label)s tied with response %(above)s.",
    untied: "Response %(label)s no longer tied.",
  };
  function uiText(key, values) {
    return window.prefloopText ? window.prefloopText(key, values, UI_TEXT_EN[key]) : UI_TEXT_EN[key];
  }

  function announce(text) {
    var status = document.getElementById("rank-status");
    if (status) status.textContent = text;
  }

  // Places follow the on-screen order; a tied item shares the place of the one
  // above it (1, 2, 2, 4), which is also what the selects mean without script.
  function sync(list) {
    var place = 0;
    items(list).forEach(function (item, index) {
      var tied = index > 0 && item.dataset.tied === "true";
      if (!tied) item.dataset.tied = "false";
      if (!tied) place = index + 1;
      item.querySelector(".rank-number").textContent = String(place);
      item.querySelector(".rank-select").value = String(place);
      item.classList.toggle("is-tied", tied);
      var toggle = item.querySelector(".tie-toggle");
      if (toggle) {
        toggle.hidden = index === 0;
        toggle.setAttribute("aria-pressed", tied ? "true" : "false");
      }
    });
  }

  // Moving an item breaks its tie and the tie of whatever now sits below it,
  // since "tied with the one above" no longer means the same pair.
  function untieAround(list, item) {
    item.dataset.tied = "false";
    var next = item.nextElementSibling;
    if (next) next.dataset.tied = "false";
  }

  function moveTo(list, item, index) {
    var all = items(list);
    index = Math.max(0, Math.min(all.length - 1, index));
    var old = all.indexOf(item);
    if (old === index) return;
    var below = item.nextElementSibling;
    if (below) below.dataset.tied = "false";
    var others = all.filter(function (other) { return other !== item; });
    if (index >= others.length) list.appendChild(item);
    else list.insertBefore(item, others[index]);
    untieAround(list, item);
    sync(list);
    item.focus({ preventScroll: false });
    announce(uiText("moved", { label: label(item), place: index + 1 }));
  }

  function toggleTie(list, item) {
    if (list.closest(".ranking").dataset.allowTie !== "true") return;
    if (!item.previousElementSibling) return;
    item.dataset.tied = item.dataset.tied === "true" ? "false" : "true";
    sync(list);
    var above = item.previousElementSibling;
    announce(
      item.dataset.tied === "true"
        ? uiText("tied", { label: label(item), above: label(above) })
        : uiText("untied", { label: label(item) })
    );
  }

  function setUp(list) {
    if (!list || list.dataset.ready === "true") return;
    list.dataset.ready = "true";
    if (window.Sortable) {
      window.Sortable.create(list, {
        draggable: ".rank-item",
        handle: ".rank-side",
        animation: 120,
        forceFallback: true,
        fallbackOnBody: true,
        ghostClass: "is-ghost",
        chosenClass: "is-dragging",
        onStart: function (event) {
          var below = event.item.nextElementSibling;
          if (below) below.dataset.tied = "false";
        },
        onEnd: function (event) {
          untieAround(list, event.item);
          sync(list);
          announce(uiText("moved", { label: label(event.item), place: event.newIndex + 1 }));
        },
      });
    }
    list.addEventListener("change", function (event) {
      if (!event.target.classList.contains("rank-select")) return;
      var item = event.target.closest(".rank-item");
      moveTo(list, item, parseInt(event.target.value, 10) - 1);
      event.target.focus();
    });
    list.addEventListener("click", function (event) {
      var toggle = event.target.closest(".tie-toggle");
      if (toggle) toggleTie(list, toggle.closest(".rank-item"));
    });
    sync(list);
  }

  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || event.altKey || event.ctrlKey || event.metaKey) return;
    var list = rankList();
    if (!list || isTyping(event.target)) return;
    var key = String(event.key);
    var all = items(list);
    var focused = document.activeElement && document.activeElement.closest
      ? document.activeElement.closest(".rank-item")
      : null;
    if (focused && !list.contains(focused)) focused = null;

    if (key === "Enter") {
      // Buttons handle Enter themselves; anywhere else it submits the ranking.
      if (event.target.tagName === "BUTTON" || event.target.tagName === "A" || event.repeat) return;
      var form = list.closest("form");
      var submit = form ? form.querySelector('button[name="choice"][value="ranked"]') : null;
      if (submit && !submit.disabled) {
        event.preventDefault();
        submit.click();
      }
      return;
    }
    if (event.shiftKey) return;
    if (/^[a-h]$/i.test(key)) {
      var wanted = key.toUpperCase();
      var match = all.filter(function (item) { return label(item) === wanted; })[0];
      if (match) {
        event.preventDefault();
        match.focus();
        match.scrollIntoView({ block: "nearest" });
      }
      return;
    }
    if (!focused) return;
    if (/^[1-8]$/.test(key) && parseInt(key, 10) <= all.length) {
      event.preventDefault();
      moveTo(list, focused, parseInt(key, 10) - 1);
    } else if (key === "ArrowUp" || key === "ArrowDown") {
      event.preventDefault();
      moveTo(list, focused, all.indexOf(focused) + (key === "ArrowUp" ? -1 : 1));
    } else if (key === "=") {
      event.preventDefault();
      toggleTie(list, focused);
    }
  });

  document.addEventListener("htmx:load", function (event) {
    var elt = event.detail && event.detail.elt;
    if (!elt || !elt.querySelectorAll) return;
    var list = elt.matches && elt.matches(".rank-list") ? elt : elt.querySelector(".rank-list");
    if (list) setUp(list);
  });
  document.addEventListener("DOMContentLoaded", function () {
    setUp(rankList());
  });
})();
