// MathJax settings for pymdownx.arithmatex (generic mode): \( \) inline, \[ \] display.
// Output is SVG: glyphs are drawn from paths inside tex-svg-full.js, so no web font is loaded
// (browsers refuse fonts from file:// pages, and the site must render opened from disk).
window.MathJax = {
  tex: {inlineMath: [["\\(", "\\)"]], displayMath: [["\\[", "\\]"]], processEscapes: true, processEnvironments: true},
  options: {ignoreHtmlClass: ".*|", processHtmlClass: "arithmatex"},
  svg: {fontCache: "global"}
};
document$.subscribe(() => { if (window.MathJax.typesetPromise) { MathJax.typesetPromise(); } });
