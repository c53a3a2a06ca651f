// Tell RequireJS that the ipywidgets modules live in the vendored html-manager/ folder next
// to this file, so the files they load themselves (icon fonts) come from there instead of
// from beside each page.
(function () {
  var manager = document.currentScript.src.replace(/[^/]*$/, "") + "html-manager";
  require.config({
    paths: { "@jupyter-widgets": manager, "@jupyter-widgets/html-manager/dist": manager },
  });
})();
