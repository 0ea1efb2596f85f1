// Home: a query box, and the latest builds and deploys, one click from their lines.
import { h, api, errorBox, info, num, pct, ago, fmtDuration, fmtTimeZ, stateBadge, href, groupPath } from './lib.js';
import { queryForm } from './search.js';

export default function home(main, ctx) {
  document.title = 'shiplog';
  const ac = new AbortController();
  const builds = h('section', { class: 'panel' }, h('h2', {}, 'Latest builds'), info('Loading…'));
  const deploys = h('section', { class: 'panel' }, h('h2', {}, 'Latest deploys'), info('Loading…'));
  main.append(queryForm(ctx, { q: '', start: '1h' }), h('div', { class: 'cols' }, builds, deploys));

  api('/v1/builds', { page_size: 25 }, ac.signal).then((r) => {
    const list = r.builds || [];
    builds.replaceChildren(h('h2', {}, 'Latest builds'), list.length ? h('div', { class: 'tablewrap' }, h('table', { class: 'grid' },
      h('thead', {}, h('tr', {}, h('th', {}, 'build'), h('th', {}, 'status'), h('th', {}, 'services'), h('th', { class: 'r' }, 'lines'),
        h('th', { class: 'r' }, 'errors'), h('th', {}, 'duration'), h('th', {}, 'last line'))),
      h('tbody', {}, list.map((b) => h('tr', {},
        h('td', {}, h('a', { href: groupPath('build', b.build_id) }, b.build_id)),
        h('td', {}, stateBadge(b.status), b.status === 'failed' ? ` exit ${b.exit_code}` : ''),
        h('td', {}, (b.services || []).join(', ')),
        h('td', { class: 'r' }, num(b.lines)),
        h('td', { class: 'r' + (errs(b) ? ' bad' : '') }, num(errs(b))),
        h('td', {}, b.duration_seconds && (b.runs || []).length ? fmtDuration(b.duration_seconds) : ''),
        h('td', { title: fmtTimeZ(b.last_time) }, b.last_time ? ago(b.last_time) : '')))))) : info('No builds yet: lines with a build_id show up here.'));
  }, (e) => e.name !== 'AbortError' && builds.append(errorBox(e)));

  api('/v1/deploys', { page_size: 25 }, ac.signal).then((r) => {
    const list = r.deploys || [];
    deploys.replaceChildren(h('h2', {}, 'Latest deploys'), list.length ? h('div', { class: 'tablewrap' }, h('table', { class: 'grid' },
      h('thead', {}, h('tr', {}, h('th', {}, 'deploy'), h('th', {}, 'services'), h('th', { class: 'r' }, 'hosts'),
        h('th', { class: 'r' }, 'error rate'), h('th', {}, 'previous'), h('th', {}, 'last line'))),
      h('tbody', {}, list.map((d) => h('tr', {},
        h('td', {}, h('a', { href: groupPath('deploy', d.deploy_id) }, d.deploy_id)),
        h('td', {}, (d.services || []).join(', ')),
        h('td', { class: 'r' }, num((d.hosts || []).length)),
        h('td', { class: 'r' + (d.previous_deploy_id && d.error_rate > 2 * d.previous_error_rate && d.error_rate > 0.01 ? ' bad' : '') }, pct(d.error_rate)),
        h('td', {}, d.previous_deploy_id ? [h('a', { href: groupPath('deploy', d.previous_deploy_id) }, d.previous_deploy_id), ` ${pct(d.previous_error_rate)}`] : '—'),
        h('td', { title: fmtTimeZ(d.last_time) }, d.last_time ? ago(d.last_time) : '')))))) : info('No deploys yet: lines with a deploy_id show up here.'));
  }, (e) => e.name !== 'AbortError' && deploys.append(errorBox(e)));

  return () => ac.abort();
}

const errs = (x) => ((x.levels && x.levels.error) || 0) + ((x.levels && x.levels.fatal) || 0);
