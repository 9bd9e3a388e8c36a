// Tables with class "sortable" sort by a clicked column (again: the other way): numbers by their
// cell's data-v, text otherwise. Shared by report.html and sweep.html.
'use strict';
(function () {
  for (const table of document.querySelectorAll('table.sortable')) {
    table.querySelectorAll('thead th').forEach((th, col) => th.addEventListener('click', () => {
      const asc = !th.classList.contains('asc');
      table.querySelectorAll('thead th').forEach(x => x.classList.remove('asc', 'desc'));
      th.classList.add(asc ? 'asc' : 'desc');
      const key = tr => {
        const td = tr.children[col];
        return td.dataset.v !== undefined ? Number(td.dataset.v) : td.textContent;
      };
      const body = table.tBodies[0];
      const rows = Array.from(body.rows);
      rows.sort((a, b) => { const x = key(a), y = key(b); return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1); });
      body.append(...rows);
    }));
  }
})();
