// placeholder
export function render(main) { main.replaceChildren(); }
