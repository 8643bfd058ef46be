// A page's Print control (templates/evidence.html): a listener here, not an inline onclick,
// so the Content-Security-Policy can refuse every inline script.
document.querySelectorAll("[data-print]").forEach((control) => {
  control.addEventListener("click", () => window.print());
});
