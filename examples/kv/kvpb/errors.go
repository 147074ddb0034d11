package kvpb

import (
	gwir "github.com/zerohop/zerohop/proto"
	"github.com/zerohop/zerohop/typed"
)

// ErrNotFound is the application status of a Get for a missing key; match
// it with errors.Is.
var ErrNotFound = typed.NewError(gwir.StatusApplication, "")
