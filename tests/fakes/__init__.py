"""Local fake upstream APIs (GitHub, GitLab, Google, Microsoft Graph...) served over real loopback HTTP."""
