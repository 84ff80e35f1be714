// Keys for the review pages and the amend page. Every form works without this
// file; it only presses buttons and follows links.
//  - a button or link with data-key="<key>" is clicked when that key is pressed;
//  - the review queue: J/K move through the rows, Enter opens the one selected;
//  - E puts the cursor in the verdict's reason box.
(function () {
  "use strict";

  // Keys go to the page unless the focus is somewhere that takes text (a ticked
  // checkbox keeps the focus but types nothing).
  function isTyping(el) {
    if (!el || !el.tagName) return false;
    var tag = el.tagName;
    if (tag === "INPUT") return !/^(checkbox|radio|button|submit)$/i.test(el.type || "");
    return tag === "TEXTAREA" || tag === "SELECT" || el.isContentEditable;
  }

  var selected = -1;

  function rows() {
    return Array.prototype.slice.call(document.querySelectorAll("#review-queue .review-row"));
  }

  function select(index) {
    var all = rows();
    if (!all.length) return;
    selected = Math.max(0, Math.min(all.length - 1, index));
    all.forEach(function (row, i) { row.classList.toggle("is-selected", i === selected); });
    all[selected].scrollIntoView({ block: "nearest" });
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (isTyping(event.target)) {
      if (event.key === "Escape") event.target.blur();
      return;
    }
    var key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    if (rows().length) {
      if (key === "j") { select(selected + 1); event.preventDefault(); return; }
      if (key === "k") { select(selected - 1); event.preventDefault(); return; }
      if (key === "Enter" && selected >= 0) { window.location.href = rows()[selected].dataset.href; return; }
    }
    if (key === "e") {
      var reason = document.getElementById("verdict-reason");
      if (reason) { reason.focus(); event.preventDefault(); return; }
    }
    var target = document.querySelector('[data-key="' + (key === '"' ? "" : key) + '"]');
    if (target) {
      event.preventDefault();
      target.click();
    }
  });
})();
