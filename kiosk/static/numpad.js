// The on-screen number pad (kiosk/templates/kiosk/_numpad.html): each pad writes digits
// into the input its data-numpad-for names, at most data-numpad-max of them, and
// tells the page with an "input" event, as typing would.

export function attach(pad) {
  const field = document.getElementById(pad.dataset.numpadFor);
  if (!field) return;
  const most = Number(pad.dataset.numpadMax) || 8;
  const write = (value) => {
    field.value = value.replace(/\D/g, "").slice(0, most);
    field.dispatchEvent(new Event("input", { bubbles: true }));
  };
  pad.addEventListener("click", (event) => {
    const key = event.target.closest("button");
    if (!key || !pad.contains(key)) return;
    if (key.dataset.digit !== undefined) write(field.value + key.dataset.digit);
    else if (key.dataset.action === "back") write(field.value.slice(0, -1));
    else if (key.dataset.action === "clear") write("");
  });
}

for (const pad of document.querySelectorAll(".numpad[data-numpad-for]")) attach(pad);
