// Carries the page the user wanted through the login form, and shows a failed attempt.
'use strict';
(function () {
  const params = new URLSearchParams(location.search);
  const next = params.get('next');
  if (next && next.startsWith('/') && !next.startsWith('//')) document.getElementById('login-next').value = next;
  if (params.get('failed')) document.getElementById('login-failed').hidden = false;
})();
