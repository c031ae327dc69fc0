// Copy buttons beside shortened ids: the whole id goes to the clipboard.
document.addEventListener("click", function (event) {
  var button = event.target.closest("button.copy");
  if (!button || !navigator.clipboard) return;
  navigator.clipboard.writeText(button.getAttribute("data-copy")).then(function () {
    button.classList.add("copied");
    setTimeout(function () { button.classList.remove("copied"); }, 1200);
  });
});
