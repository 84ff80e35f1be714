// What the annotate page's scripts say, in the page's language: the server puts
// the texts in #ui-text's data-texts (JSON, placeholders as %(name)s); a script
// passes its English as the fallback for a text the page does not carry.
(function () {
  "use strict";
  var texts = null;

  window.prefloopText = function (key, values, fallback) {
    if (texts === null) {
      var node = document.getElementById("ui-text");
      try {
        texts = (node && JSON.parse(node.dataset.texts)) || {};
      } catch (error) {
        texts = {};
      }
    }
    var text = texts[key] || fallback || "";
    return text.replace(/%\((\w+)\)s/g, function (_, name) {
      return name in values ? String(values[name]) : "";
    });
  };
})();
