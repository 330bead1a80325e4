// Package console tests the store's web console in a real browser:
// headless Chromium (Debian's chromium package), driven over the DevTools
// protocol by chromedp, against the same setup as `mailbus demo` run in
// the test's process (the all-in-one server, the demo IMAP and POP3
// servers and their two accounts). Screenshots of the main pages are kept
// in MAILBUS_TEST_ARTIFACTS, or a directory under the system's temporary
// directory, never in the repository. Outside CI the tests skip when
// Chromium is missing, saying what to install; with CI=true they fail.
package console
