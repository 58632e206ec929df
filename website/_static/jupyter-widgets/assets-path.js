// Where the ipywidgets HTML manager finds its fonts, in this site. Each module of embed-amd.js
// loads them from beside the address RequireJS gives it (baseUrl + its name, e.g.
// "@jupyter-widgets/controls"), one of them from window.__jupyter_widgets_assets_path__: both
// point at ./@jupyter-widgets/ beside this script, where helpers.site copies the fonts.
(function () {
  var here = new URL("./", document.currentScript.src).href;
  window.__jupyter_widgets_assets_path__ = here + "@jupyter-widgets/";
  window.require.config({ baseUrl: here });
})();
