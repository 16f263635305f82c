// The user and attribute set that Portico's SAML connector tests log in with (saml-idp --configFile).
// Every form field posted to /signin overrides the matching user field, so tests choose their values.
const user = {
  userName: 'jane-0001',
  nameIdFormat: 'urn:oasis:names:tc:SAML:2.0:nameid-format:persistent',
  email: 'jane@example.com',
  uid: 'jane',
  groups: 'admins,developers',
  groupList: 'admins;developers',
};

// multiValue attributes are split on ',' by saml-idp and sent as several AttributeValue elements.
const metadata = [
  { id: 'email', optional: false, displayName: 'E-Mail', description: 'e-mail address', multiValue: false },
  { id: 'uid', optional: false, displayName: 'Username', description: 'login name', multiValue: false },
  { id: 'groups', optional: true, displayName: 'Groups', description: 'one value per group', multiValue: true },
  { id: 'groupList', optional: true, displayName: 'Group list', description: 'groups joined by ;', multiValue: false },
];

module.exports = { user, metadata };
