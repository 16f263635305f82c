// Submits the SAML AuthnRequest form (saml_post.html) as soon as the page is parsed. A file of its own:
// the pages' Content-Security-Policy runs no inline script.
'use strict';
document.addEventListener('DOMContentLoaded', function () {
  var form = document.getElementById('saml-post');
  if (form) {
    // The prototype's submit: a form control named "submit" would shadow form.submit.
    HTMLFormElement.prototype.submit.call(form);
  }
});
