(function () {
  if (!window.EventSource) return;
  var pending = null;
  var source = new EventSource('/api/v1/stream');
  function refresh() {
    if (pending) return;
    pending = setTimeout(function () { window.location.reload(); }, 2000);
  }
  ['fleet', 'backups', 'alerts', 'resync'].forEach(function (name) {
    source.addEventListener(name, refresh);
  });
})();
