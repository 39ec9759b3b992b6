// incident-relay console: the one script. Every page works without it
// (forms post and redirect); it only makes them nicer. It is served from the
// package with script-src 'self' and never evaluates text from the page; the
// only markup it inserts is the policy preview's verdict, rendered by the
// relay's escaping template.

/** A form sent once is not sent again by a second click while the first is on its way. */
function guardDoubleSubmit(form) {
  form.addEventListener('submit', (event) => {
    if (form.dataset.submitting === 'true') {
      event.preventDefault();
      return;
    }
    form.dataset.submitting = 'true';
    form.setAttribute('aria-busy', 'true');
  });
}

/** Tells the sender before uploading that the attachments are over the relay's limit. */
function checkAttachmentSize(form) {
  const max = Number(form.dataset.maxBytes);
  const input = form.querySelector('input[type="file"][name="attachments"]');
  if (!input || !Number.isFinite(max) || max <= 0) return;
  const hint = document.createElement('p');
  hint.className = 'hint';
  hint.setAttribute('role', 'status');
  hint.id = 'compose-size';
  input.insertAdjacentElement('afterend', hint);
  const describedBy = `${input.getAttribute('aria-describedby') ?? ''} compose-size`.trim();
  input.setAttribute('aria-describedby', describedBy);
  input.addEventListener('change', () => {
    let total = 0;
    for (const file of input.files ?? []) total += file.size;
    const mb = (n) => (n / (1024 * 1024)).toFixed(1);
    hint.textContent = total > max ? `These files are ${mb(total)} MB; the relay takes at most ${mb(max)} MB. Remove some before sending.` : total > 0 ? `${mb(total)} MB attached.` : '';
    input.setCustomValidity(total > max ? hint.textContent : '');
  });
}

/** A paragraph of plain text (textContent: nothing the relay or the user wrote is parsed as markup here). */
function paragraph(text, className) {
  const p = document.createElement('p');
  if (className) p.className = className;
  p.textContent = text;
  return p;
}

/**
 * The live policy preview. As the recipients (or the topic, or the files)
 * change, the draft is posted to the relay's preview (the decision a send
 * would make; nothing is queued) and its verdict replaces the content of the
 * aria-live region, so a screen reader says it. Debounced, and only when
 * what the verdict depends on changed: each preview is audited and counts
 * against the sender's rate limit like a send. Files go as empty stand-ins
 * with their names (the names are checked; their size is checked here,
 * above). "Check before sending" asks at once instead of leaving the page.
 * Only an answer the relay marked as a verdict fragment is shown: a sign-in
 * page or an error page never lands inside the form.
 */
function livePreview(form) {
  const region = form.querySelector('#compose-preview');
  const url = form.dataset.preview;
  const check = form.querySelector('button[data-check]');
  if (!region || !url) return;
  let timer;
  let controller;
  let shown = '';

  const draft = () => {
    const body = new FormData();
    const key = [];
    for (const [name, value] of new FormData(form)) {
      if (typeof value === 'string') {
        body.append(name, value);
        // The message text does not change the verdict (only its size, checked on sending).
        if (name !== 'text' && name !== 'idempotencyKey') key.push([name, value]);
      } else if (value.name !== '') {
        body.append(name, new File([], value.name, { type: value.type }));
        key.push([name, value.name, value.type]);
      }
    }
    return { body, key: JSON.stringify(key) };
  };

  const run = async (force) => {
    const { body, key } = draft();
    if (!force && key === shown) return;
    if (body.getAll('to').length === 0) {
      shown = key;
      region.replaceChildren(paragraph('Tick at least one recipient under To to see whether the message will be encrypted, go plain, or be refused.', 'hint'));
      return;
    }
    controller?.abort();
    controller = new AbortController();
    region.setAttribute('aria-busy', 'true');
    try {
      const response = await fetch(url, { method: 'POST', body, credentials: 'same-origin', signal: controller.signal, headers: { Accept: 'text/html' } });
      const text = await response.text();
      if (response.headers.get('Console-Fragment') !== 'verdict') throw new Error(`no verdict (${response.status})`);
      // Markup the relay's escaping template built; parsed into a template, so nothing runs while it is read.
      const template = document.createElement('template');
      template.innerHTML = text;
      region.replaceChildren(template.content);
      shown = key;
    } catch (err) {
      if (err instanceof DOMException && err.name === 'AbortError') return;
      shown = '';
      region.replaceChildren(paragraph('The preview could not be fetched (your session may have ended). Reload the page, or press "Check before sending".', 'hint'));
    } finally {
      region.removeAttribute('aria-busy');
    }
  };

  form.addEventListener('change', (event) => {
    if (event.target?.name === 'text') return;
    clearTimeout(timer);
    timer = setTimeout(() => run(false), 400);
  });
  check?.addEventListener('click', (event) => {
    event.preventDefault();
    clearTimeout(timer);
    run(true);
  });
}

/** After a refusal, put the keyboard where the message is, so it is read first and Tab continues from there. */
function focusRefusal() {
  const refusal = document.querySelector('.refusal[role="alert"]');
  if (!refusal) return;
  refusal.setAttribute('tabindex', '-1');
  refusal.focus();
}

for (const form of document.querySelectorAll('form[method="post"]')) guardDoubleSubmit(form);
for (const form of document.querySelectorAll('form[data-compose]')) {
  checkAttachmentSize(form);
  livePreview(form);
}
focusRefusal();
