// Annotate page: keyboard answers, time on task, feedback while a request is in flight.
// The form works without this file (plain POST) and without htmx (full page load);
// with htmx the server swaps #comparison for the next one.
(function () {
  "use strict";

  // Each answer button names its key in aria-keyshortcuts; these letters are
  // aliases for the plain A / B / tie buttons (not the strength scale). The
  // arrows point at the card on that side: in a right-to-left page A is on the right.
  var RTL = document.documentElement.dir === "rtl";
  var ALIASES = { a: "a", b: "b", t: "tie", arrowleft: RTL ? "b" : "a", arrowright: RTL ? "a" : "b" };
  // Answer keys are ignored for this long after a new comparison appears: the
  // next one is on screen the moment an answer goes out, so a key pressed
  // twice (or held) would otherwise answer a comparison nobody has seen. The
  // section carries the class "arming" meanwhile (the buttons look inactive).
  // The server also counts answers given too fast (services.FAST_ANSWER_MS).
  var ARM_MS = 350;
  var shownAt = performance.now();
  var armedAt = 0; // answer keys count from this time on (0: at once, on the first page load)
  var armTimer = null;
  // Only a comparison never seen before is armed: one shown again (after a
  // refused answer, a failed request or an undo) has been seen, and takes keys
  // at once. A comparison counts as seen once it stayed on screen through its
  // arming time: the one shown ahead while a refused answer was in flight was
  // taken back before anyone could read it, so it is armed again next time.
  var seenIds = {};
  var firstSection = document.getElementById("comparison");
  if (firstSection) seenIds[firstSection.getAttribute("data-comparison-id")] = true;
  // The form whose answer is in flight. A newly swapped-in form is never busy,
  // even before htmx has finished settling it.
  var busyForm = null;

  function answerForm() {
    return document.getElementById("answer-form");
  }

  function isTyping(el) {
    if (!el || !el.tagName) return false;
    var tag = el.tagName;
    // A rating's radio button takes only arrows and space: answer keys still work there.
    if (tag === "INPUT" && (el.type === "radio" || el.type === "checkbox")) return false;
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || el.isContentEditable;
  }

  function clearFeedback(form) {
    form.querySelectorAll(".is-chosen, .is-pressed").forEach(function (el) {
      el.classList.remove("is-chosen", "is-pressed");
    });
  }

  // A comparison just appeared (first load, or swapped in by htmx): restart the clock.
  function comparisonShown(section) {
    shownAt = performance.now();
    busyForm = null;
    if (!section) return;
    var id = section.getAttribute("data-comparison-id");
    if (!id || seenIds[id]) disarm(section);
    else arm(section, id);
    keepLastTurnInView(section);
    var top = section.getBoundingClientRect().top;
    if (top < 0) section.scrollIntoView({ block: "start" });
    // The focused button was swapped out; keep focus inside the page for keyboard users.
    if (!document.activeElement || document.activeElement === document.body) {
      section.focus({ preventScroll: true });
    }
  }

  function arm(section, id) {
    armedAt = performance.now() + ARM_MS;
    section.classList.add("arming");
    if (armTimer) clearTimeout(armTimer);
    armTimer = setTimeout(function () {
      armTimer = null;
      var current = document.getElementById("comparison");
      if (!current) return;
      current.classList.remove("arming");
      if (current.getAttribute("data-comparison-id") === id) seenIds[id] = true;
    }, ARM_MS);
  }

  // A comparison already seen is back on screen (e.g. the server refused the
  // answer while the one shown ahead was arming): its keys work at once, and
  // the arming time of the one it replaced no longer holds them back.
  function disarm(section) {
    armedAt = 0;
    if (armTimer) clearTimeout(armTimer);
    armTimer = null;
    section.classList.remove("arming");
  }

  // A long conversation scrolls inside its box: its last turn (what the
  // responses answer) is what shows first.
  function keepLastTurnInView(section) {
    section.querySelectorAll(".prompt-body").forEach(function (body) {
      if (body.querySelector(".conversation")) body.scrollTop = body.scrollHeight;
    });
  }

  // What the page says, in its language: the server puts the texts in #ui-text
  // (json_script); English when they are missing.
  var UI_TEXT_EN = {
    missing: "Before answering, please give: %(missing)s.",
    reason: "a reason (Why?)",
  };
  function uiText(key, values) {
    return window.prefloopText ? window.prefloopText(key, values, UI_TEXT_EN[key]) : UI_TEXT_EN[key];
  }

  // Required ratings and reasons are checked here rather than by the browser,
  // whose pop-up takes the focus (and with it the answer keys): a message in
  // the page names what is missing and the keys keep working.
  function missingMessage(form) {
    var missing = [];
    var seen = {};
    form.querySelectorAll("input[required], textarea[required], select[required]").forEach(function (field) {
      var wrong = field.type === "radio" ? !form.querySelector('input[name="' + field.name + '"]:checked') : !field.value.trim();
      var mark = field.closest(".likert") || field;
      mark.classList.toggle("is-missing", wrong);
      if (!wrong || seen[field.name]) return;
      seen[field.name] = true;
      var group = field.closest("[aria-label]");
      missing.push(field.type === "radio" && group ? group.getAttribute("aria-label") : uiText("reason", {}));
    });
    var box = form.querySelector(".missing-answer");
    if (!missing.length) {
      if (box) box.hidden = true;
      return false;
    }
    if (!box) {
      box = document.createElement("p");
      box.className = "alert alert-error missing-answer";
      box.setAttribute("role", "alert");
      var choices = form.querySelector(".choices");
      choices.parentNode.insertBefore(box, choices);
    }
    box.textContent = uiText("missing", { missing: missing.join("; ") });
    box.hidden = false;
    return true;
  }

  document.addEventListener("change", function (event) {
    var form = answerForm();
    var box = form && form.querySelector(".missing-answer");
    if (box && !box.hidden && form.contains(event.target)) missingMessage(form);
  });

  function answerButton(form, key) {
    var buttons = form.querySelectorAll('button[name="choice"]');
    for (var i = 0; i < buttons.length; i++) {
      if ((buttons[i].getAttribute("aria-keyshortcuts") || "").toLowerCase() === key) return buttons[i];
    }
    var alias = ALIASES[key];
    return alias ? form.querySelector('button[name="choice"][value="' + alias + '"]') : null;
  }

  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || event.repeat || event.altKey || event.ctrlKey || event.metaKey || event.shiftKey) {
      return;
    }
    var form = answerForm();
    if (!form) return;
    if (isTyping(event.target)) {
      // Esc leaves a text box so the answer keys work again.
      if (event.key === "Escape" && event.target.form === form) event.target.blur();
      return;
    }
    var key = String(event.key).toLowerCase();
    if (key === "enter") return; // buttons and the ranking (rank.js) handle Enter
    // Arrows on a rating move the rating.
    if (key.indexOf("arrow") === 0 && event.target.type === "radio") return;
    if (key === "g" && !form.querySelector('.rank-item[data-card="G"]')) {
      var guidelines = document.querySelector("details.guidelines");
      if (guidelines) {
        event.preventDefault();
        guidelines.open = !guidelines.open;
        if (guidelines.open) guidelines.scrollIntoView({ block: "nearest" });
      }
      return;
    }
    if (key === "u") {
      var undo = document.querySelector("#comparison .undo-button");
      if (undo && getComputedStyle(undo.form).visibility !== "hidden") {
        event.preventDefault();
        undo.click();
      }
      return;
    }
    if (key === "d") {
      var diff = document.getElementById("show-diff");
      if (diff) {
        event.preventDefault();
        diff.checked = !diff.checked;
      }
      return;
    }
    if (key === "s") {
      var skip = form.querySelector("details.skip");
      if (skip) {
        event.preventDefault();
        skip.open = true;
        skip.querySelector("select").focus();
      }
      return;
    }
    var button = answerButton(form, key);
    if (!button) return;
    event.preventDefault();
    if (busyForm === form || button.disabled) return;
    if (performance.now() < armedAt) return; // just appeared: see ARM_MS
    button.click();
  });

  // Capture phase: runs before htmx reads the form, for mouse and keyboard alike.
  document.addEventListener(
    "click",
    function (event) {
      var button = event.target.closest ? event.target.closest('button[name="choice"]') : null;
      var form = button && button.form;
      if (!form || form.id !== "answer-form") return;
      // Busy, or just shown (ARM_MS): a double click or a second Enter (rank.js
      // submits by click) must not answer a comparison nobody has seen.
      if (busyForm === form || performance.now() < armedAt) {
        event.preventDefault();
        event.stopPropagation();
        return;
      }
      // A required rating or reason left out: say so in the page, send nothing.
      if (!button.formNoValidate && missingMessage(form)) {
        event.preventDefault();
        event.stopPropagation();
        return;
      }
      busyForm = form;
      form.elements.time_on_task_ms.value = String(Math.max(0, Math.round(performance.now() - shownAt)));
      var cards = button.getAttribute("data-card") || "";
      form.querySelectorAll(".candidate").forEach(function (card) {
        card.classList.toggle("is-chosen", cards.indexOf(card.getAttribute("data-card")) !== -1);
      });
      button.classList.add("is-pressed");
      var netError = form.querySelector(".net-error");
      if (netError) netError.hidden = true;
    },
    true
  );

  // A page restored from the back/forward cache shows an old comparison and old
  // counts (the pages are sent with no-store, which most browsers honour): load it afresh.
  window.addEventListener("pageshow", function (event) {
    if (event.persisted) window.location.reload();
  });

  // The clock starts when the new comparison is on screen, before htmx settles it.
  document.addEventListener("htmx:afterSwap", function () {
    shownAt = performance.now();
  });

  // First page load (the script is deferred: the page is parsed).
  keepLastTurnInView(document);

  document.addEventListener("htmx:load", function (event) {
    var elt = event.detail && event.detail.elt;
    if (elt && elt.id === "comparison") comparisonShown(elt);
  });

  // --- the next comparison, already on the page --------------------------------
  // The server sends the comparison after this one, leased ahead, in
  // <template id="comparison-ahead">. When an answer goes out it is shown at
  // once, so nobody waits for the round trip; the reply then only brings the
  // fresh parts (the one after it, progress, the undo bar). A refused answer,
  // a failed request, or a reply that shows something else puts the server's
  // view back on screen.
  function showAhead(section, form) {
    var ahead = section.querySelector(":scope > template#comparison-ahead");
    var next = ahead && ahead.content.firstElementChild;
    if (!next) return null;
    var saved = { children: Array.prototype.slice.call(section.childNodes), id: section.getAttribute("data-comparison-id") };
    var fresh = document.importNode(next, true);
    section.replaceChildren.apply(section, Array.prototype.slice.call(fresh.childNodes));
    section.setAttribute("data-comparison-id", fresh.getAttribute("data-comparison-id"));
    processChildren(section);
    comparisonShown(section);
    htmx.trigger(section, "htmx:load", { elt: section });
    document.dispatchEvent(new CustomEvent("prefloop:shown", { detail: { prefetched: true } }));
    return { saved: saved, shownForm: answerForm(), shownId: section.getAttribute("data-comparison-id"), sent: form };
  }

  function restore(section, pending) {
    section.replaceChildren.apply(section, pending.saved.children);
    section.setAttribute("data-comparison-id", pending.saved.id);
    clearFeedback(pending.sent);
    pending.sent.querySelectorAll("button").forEach(function (b) { b.disabled = false; });
    comparisonShown(section);
  }

  function takeFreshParts(section, reply) {
    var holder = document.createElement("template");
    holder.innerHTML = reply;
    var root = holder.content.querySelector("#comparison");
    if (!root) return;
    [":scope > .progress", ":scope > template#comparison-ahead", ":scope > .undo-bar", ":scope > .answer-notice"].forEach(function (selector) {
      var mine = section.querySelector(selector);
      var theirs = root.querySelector(selector);
      if (mine) mine.remove();
      if (theirs) {
        var part = document.importNode(theirs, true);
        if (selector.indexOf("template") !== -1) section.appendChild(part);
        else section.insertBefore(part, section.firstChild);
      }
    });
    processChildren(section);
  }

  // htmx.process on the section itself would re-initialise it (its
  // data-comparison-id changed) and so forget what htmx keeps on it; its
  // children are what is new.
  function processChildren(section) {
    Array.prototype.forEach.call(section.children, function (child) { htmx.process(child); });
  }

  // Answers sent with the next comparison already shown, by request.
  var inFlight = new WeakMap();

  // The reply is swapped into #comparison, which stayed on the page.
  document.addEventListener("htmx:beforeSwap", function (event) {
    var pending = inFlight.get(event.detail.xhr);
    if (!pending) return;
    var xhr = event.detail.xhr;
    if (xhr.status >= 400) return; // refused: show the server's answer (the form with its message)
    var holder = document.createElement("template");
    holder.innerHTML = xhr.responseText;
    var root = holder.content.querySelector("#comparison");
    var replyId = root ? root.getAttribute("data-comparison-id") : null;
    event.detail.shouldSwap = false;
    if (answerForm() !== pending.shownForm) return; // the annotator has moved on: a later reply rules
    if (replyId === pending.shownId) takeFreshParts(pending.section, xhr.responseText);
    else event.detail.shouldSwap = true; // the server says otherwise (e.g. the lease ran out)
  });

  document.addEventListener("htmx:beforeSend", function (event) {
    var form = event.detail.elt;
    if (!form || form.id !== "answer-form") return;
    var section = document.getElementById("comparison");
    if (!section || !section.contains(form)) return;
    var pending = showAhead(section, form);
    if (!pending) return;
    pending.section = section;
    // The reply need not carry the comparison now on screen: only the parts
    // around it (see takeFreshParts). The request is open, not yet sent.
    event.detail.xhr.setRequestHeader("X-Prefloop-Showing", pending.shownId);
    inFlight.set(event.detail.xhr, pending);
    var failed = function () {
      if (answerForm() === pending.shownForm) restore(section, pending);
      var netError = section.querySelector(".net-error");
      if (netError) netError.hidden = false;
    };
    form.addEventListener("htmx:sendError", failed);
    form.addEventListener("htmx:responseError", failed);
    form.addEventListener("htmx:timeout", failed);
  });

  // The request failed without a response to show: let the annotator answer again.
  function requestFailed(event) {
    var form = answerForm();
    if (!form || event.target !== form) return;
    busyForm = null;
    clearFeedback(form);
    var netError = form.querySelector(".net-error");
    if (netError) netError.hidden = false;
  }
  document.addEventListener("htmx:sendError", requestFailed);
  document.addEventListener("htmx:responseError", requestFailed);
  document.addEventListener("htmx:timeout", requestFailed);
})();
