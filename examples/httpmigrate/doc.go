// Package httpmigrate is the net/http → zerohop migration example: before/
// is the service on net/http, after/ the same service on zerohop with its
// HTTP health endpoint kept beside it. README.md walks through the change;
// this package holds only the test that runs both.
package httpmigrate
