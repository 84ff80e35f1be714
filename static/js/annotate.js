// Annotate page: keyboard answers, time on task, feedback while a request is in flight.
// The form works without this file (plain POST) and without htmx (full page load);
// with htmx the server swaps #comparison for the next one.
(function () {
  "use strict";

  // Each answer button names its key in aria-keyshortcuts; these letters are
  // aliases for the plain A / B / tie buttons (not the strength scale).
  var ALIASES = { a: "a", arrowleft: "a", b: "b", arrowright: "b", t: "tie" };
  var shownAt = performance.now();
  // The form whose answer is in flight. A newly swapped-in form is never busy,
  // even before htmx has finished settling it.
  var busyForm = null;

  function answerForm() {
    return document.getElementById("answer-form");
  }

  function isTyping(el) {
    if (!el || !el.tagName) return false;
    var tag = el.tagName;
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
    var top = section.getBoundingClientRect().top;
    if (top < 0) section.scrollIntoView({ block: "start" });
    // The focused button was swapped out; keep focus inside the page for keyboard users.
    if (!document.activeElement || document.activeElement === document.body) {
      section.focus({ preventScroll: true });
    }
  }

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
    button.click();
  });

  // Capture phase: runs before htmx reads the form, for mouse and keyboard alike.
  document.addEventListener(
    "click",
    function (event) {
      var button = event.target.closest ? event.target.closest('button[name="choice"]') : null;
      var form = button && button.form;
      if (!form || form.id !== "answer-form") return;
      if (busyForm === form) {
        event.preventDefault();
        event.stopPropagation();
        return;
      }
      // The browser will refuse to send a form with a required field left
      // empty (and say which): not busy then, so the answer can be given again.
      if (!button.formNoValidate && !form.checkValidity()) return;
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

  // The clock starts when the new comparison is on screen, before htmx settles it.
  document.addEventListener("htmx:afterSwap", function () {
    shownAt = performance.now();
  });

  document.addEventListener("htmx:load", function (event) {
    var elt = event.detail && event.detail.elt;
    if (elt && elt.id === "comparison") comparisonShown(elt);
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
