// incident-relay console: the one script. Every page works without it
// (forms post and redirect); it only makes them nicer. It is served from the
// package with script-src 'self' and never evaluates text from the page.

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
  // TODO(second pass): the live policy preview. On input (debounced), post
  // the form without attachment bytes to the preview route and show its
  // verdict in #compose-preview (aria-live="polite").
}

/** After a refusal, put the keyboard where the message is, so it is read first and Tab continues from there. */
function focusRefusal() {
  const refusal = document.querySelector('.refusal[role="alert"]');
  if (!refusal) return;
  refusal.setAttribute('tabindex', '-1');
  refusal.focus();
}

for (const form of document.querySelectorAll('form[method="post"]')) guardDoubleSubmit(form);
for (const form of document.querySelectorAll('form[data-compose]')) checkAttachmentSize(form);
focusRefusal();
