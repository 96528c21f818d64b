/** The entrance poster: a print button (a printed poster needs no script). */
const button = document.getElementById("print");
if (button) {
  button.hidden = false;
  button.addEventListener("click", () => window.print());
}
