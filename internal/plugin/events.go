package plugin

import "neutrino/internal/schema"

// Events let a service act on another's resources without the other
// knowing: L3 refuses the direct delete of a router's port and unmaps the
// floating IPs of a port that goes, DHCP schedules a network when it gets
// a subnet, RBAC forgets the policies of a deleted network. Subscribers
// run inside the transaction of the change, in registration order; an
// error from any of them aborts the change.

// Op is what happens to a resource.
type Op string

const (
	Create Op = "create"
	Update Op = "update"
	Delete Op = "delete"
	// Report is an agent's heartbeat or registration (kind "agent").
	Report Op = "report"
)

// Phase is when subscribers run, as Neutron's callback events.
type Phase int

const (
	// Before runs ahead of the resource's handler, on the request as
	// parsed (Request) and the current object (Old; nil on create):
	// subscribers may refuse it, or clear what stands in its way.
	Before Phase = iota
	// Precommit runs when the handler has built the object and before
	// it is stored (New is the object itself, which subscribers may
	// complete). Handlers publish it themselves where a resource has one.
	Precommit
	// After runs once the change is stored (Old and New as they were and
	// are; New nil on delete).
	After
)

// Payload is what subscribers get.
type Payload struct {
	// Res is the resource changed, for the generic create, update and
	// delete (nil for events a service publishes of its own).
	Res      *schema.Resource
	Old, New Object
	// Request is the parsed request (create, update) or the report.
	Request Object
}

// Callback is a subscriber.
type Callback func(c *Ctx, p *Payload) error

type eventKey struct {
	kind  string
	op    Op
	phase Phase
}

// Subscribe runs cb for every op on resources of kind at phase; kind "*"
// subscribes to every kind (after the subscribers of the kind itself).
func (r *Registry) Subscribe(kind string, op Op, phase Phase, cb Callback) {
	k := eventKey{kind, op, phase}
	r.subs[k] = append(r.subs[k], cb)
}

// Publish runs the subscribers of an event.
func (c *Ctx) Publish(kind string, op Op, phase Phase, p *Payload) error {
	for _, k := range []string{kind, "*"} {
		for _, cb := range c.Reg.subs[eventKey{k, op, phase}] {
			if err := cb(c, p); err != nil {
				return err
			}
		}
	}
	return nil
}
