// The incident list refreshes itself while an incident on it is live (as Flower's and
// Airflow's do): it fetches this same URL, so filters, search, ordering and page are kept,
// and rewrites the rows' cells in place. It waits while rows are selected or an action is
// chosen, so a refresh never changes what an action applies to, and stops once none is live.
'use strict';
{
    const EVERY_MS = 3000;
    const LIVE_ROW = '#result_list .wf-status[data-live]';

    function rowsOf(doc) {
        return Array.from(doc.querySelectorAll('#result_list tbody tr'));
    }

    function keyOf(row) {  // the row's link to its incident (there is no checkbox without actions)
        const link = row.querySelector('th a');
        return link ? link.getAttribute('href') : row.textContent;
    }

    function selecting() {
        const action = document.querySelector('#changelist-form select[name=action]');
        return document.querySelector(
            '#result_list input.action-select:checked, #action-toggle:checked') !== null
            || Boolean(action && action.value);
    }

    function say(text) {
        const note = document.getElementById('wf-list-refresh');
        if (note) note.textContent = text;
    }

    // False when the rows themselves changed: then the page is reloaded, because Django's
    // actions.js holds on to the checkboxes it found at load.
    function updateRows(doc) {
        const shown = rowsOf(document), fresh = rowsOf(doc);
        if (shown.length !== fresh.length
                || shown.some((row, i) => keyOf(row) !== keyOf(fresh[i]))) {
            window.location.reload();
            return false;
        }
        shown.forEach((row, i) => {
            Array.from(row.cells).forEach((cell, j) => {
                const update = fresh[i].cells[j];
                if (update && !cell.classList.contains('action-checkbox')) {
                    cell.innerHTML = update.innerHTML;
                }
            });
        });
        return true;
    }

    async function tick() {
        if (!document.querySelector(LIVE_ROW)) {
            say('');
            return;
        }
        if (selecting()) {
            say('Refresh paused while rows are selected.');
        } else if (!document.hidden) {
            say(`Refreshing every ${EVERY_MS / 1000} s while incidents run.`);
            try {
                const response = await fetch(window.location.href, {credentials: 'same-origin'});
                if (!response.ok) throw new Error(`HTTP ${response.status}`);
                const doc = new DOMParser().parseFromString(await response.text(), 'text/html');
                // The operator may have started selecting while the page was on its way.
                if (!selecting() && !updateRows(doc)) return;
            } catch (error) {
                say(`Refresh failed (${error.message}); trying again.`);
            }
        }
        setTimeout(tick, EVERY_MS);
    }

    document.addEventListener('DOMContentLoaded', () => {
        if (document.querySelector(LIVE_ROW)) {
            say(`Refreshing every ${EVERY_MS / 1000} s while incidents run.`);
            setTimeout(tick, EVERY_MS);
        }
    });
}
