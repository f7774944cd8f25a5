package plugin

// Standard is what the generic machinery itself gives every resource:
// filtering, sorting, pagination, project ids, descriptions, revisions,
// timestamps and tags. Its extensions are listed like any service's.
type Standard struct{}

// Name implements Service.
func (Standard) Name() string { return "standard" }

// Register implements Service.
func (Standard) Register(r *Registry) error {
	r.Extension(
		Extension{Alias: "empty-string-filtering", Name: "Empty String Filtering Extension", Description: "Allow filtering by attributes with empty string value", Updated: "2018-05-01T10:00:00-00:00"},
		Extension{Alias: "filter-validation", Name: "Filter parameters validation", Description: "Provides validation on filter parameters.", Updated: "2018-07-04T10:00:00-00:00"},
		Extension{Alias: "pagination", Name: "Pagination support", Description: "Extension that indicates that pagination is enabled.", Updated: "2016-06-12T00:00:00-00:00"},
		Extension{Alias: "project-id", Name: "project_id field enabled", Description: "Extension that indicates that project_id field is enabled.", Updated: "2016-09-09T09:09:09-09:09"},
		Extension{Alias: "revision-if-match", Name: "If-Match constraints based on revision_number", Description: "Extension indicating that If-Match based on revision_number is supported.", Updated: "2016-12-11T00:00:00-00:00"},
		Extension{Alias: "sorting", Name: "Sorting support", Description: "Extension that indicates that sorting is enabled.", Updated: "2016-06-12T00:00:00-00:00"},
		Extension{Alias: "standard-attr-description", Name: "standard-attr-description", Description: "Extension to add descriptions to standard attributes", Updated: "2016-02-10T10:00:00-00:00"},
		Extension{Alias: "standard-attr-revisions", Name: "Resource revision numbers", Description: "This extension will display the revision number of neutron resources.", Updated: "2016-04-11T10:00:00-00:00"},
		Extension{Alias: "standard-attr-tag", Name: "Tag support for resources with standard attribute: port, subnet, subnetpool, network, security_group", Description: "Enables to set tag on resources with standard attribute.", Updated: "2017-01-01T00:00:00-00:00"},
		Extension{Alias: "standard-attr-timestamp", Name: "Resource timestamps", Description: "Adds created_at and updated_at fields to all Neutron resources that have Neutron standard attributes.", Updated: "2016-09-12T10:00:00-00:00"},
	)
	return nil
}
