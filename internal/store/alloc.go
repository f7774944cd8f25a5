package store

import (
	"database/sql"
)

// Typed allocators: the tables that make allocations unique (addresses per
// subnet, MACs per network, segmentation ids per type and physical
// network). Services claim and release through these and never write SQL;
// a claim of a taken key reports false and changes nothing (see Claim for
// how optimistic PostgreSQL writes answer it).

// ClaimIP allocates ip in subnet to port.
func (tx *Tx) ClaimIP(subnetID, ip, portID, networkID string) (bool, error) {
	return tx.Claim("INSERT INTO ip_allocations (subnet_id, ip_address, port_id, network_id) VALUES (?, ?, ?, ?)", 2,
		subnetID, ip, portID, networkID)
}

// SubnetIPs lists the addresses allocated in a subnet.
func (tx *Tx) SubnetIPs(subnetID string) ([]string, error) {
	return tx.Strings("SELECT ip_address FROM ip_allocations WHERE subnet_id = ?", subnetID)
}

// SubnetPorts lists the ports holding an address in a subnet (a port with
// two addresses there is listed twice).
func (tx *Tx) SubnetPorts(subnetID string) ([]string, error) {
	return tx.Strings("SELECT port_id FROM ip_allocations WHERE subnet_id = ?", subnetID)
}

// ReleaseIP frees one address of a subnet.
func (tx *Tx) ReleaseIP(subnetID, ip string) error {
	return tx.Do("DELETE FROM ip_allocations WHERE subnet_id = ? AND ip_address = ?", subnetID, ip)
}

// ReleasePortIPs frees every address of a port.
func (tx *Tx) ReleasePortIPs(portID string) error {
	return tx.Do("DELETE FROM ip_allocations WHERE port_id = ?", portID)
}

// ReleaseSubnetIPs frees every address of a subnet.
func (tx *Tx) ReleaseSubnetIPs(subnetID string) error {
	return tx.Do("DELETE FROM ip_allocations WHERE subnet_id = ?", subnetID)
}

// ClaimMAC reserves mac on a network for a port.
func (tx *Tx) ClaimMAC(networkID, mac, portID string) (bool, error) {
	return tx.Claim("INSERT INTO mac_addresses (network_id, mac_address, port_id) VALUES (?, ?, ?)", 2, networkID, mac, portID)
}

// ReleaseMAC frees a port's MAC, by key (the table has no index by port).
func (tx *Tx) ReleaseMAC(networkID, mac, portID string) error {
	return tx.Do("DELETE FROM mac_addresses WHERE network_id = ? AND mac_address = ? AND port_id = ?", networkID, mac, portID)
}

// ClaimSegment allocates a segmentation id of a network type (and physical
// network, "" for tunnels) to a network.
func (tx *Tx) ClaimSegment(networkType, physnet string, id int64, networkID string) (bool, error) {
	return tx.Claim("INSERT INTO segment_allocations (network_type, physical_network, segmentation_id, network_id) VALUES (?, ?, ?, ?)", 3,
		networkType, physnet, id, networkID)
}

// NextFreeSegment returns an id in [lo, hi) just after an allocated one
// whose successor is free (ok false when none is).
func (tx *Tx) NextFreeSegment(networkType, physnet string, lo, hi int64) (int64, bool, error) {
	var next sql.NullInt64
	err := tx.QueryRow(`SELECT MIN(a.segmentation_id) + 1 FROM segment_allocations a
WHERE a.network_type = ? AND a.physical_network = ? AND a.segmentation_id >= ? AND a.segmentation_id < ?
AND NOT EXISTS (SELECT 1 FROM segment_allocations b WHERE b.network_type = a.network_type
  AND b.physical_network = a.physical_network AND b.segmentation_id = a.segmentation_id + 1)`, networkType, physnet, lo, hi).Scan(&next)
	return next.Int64, err == nil && next.Valid, err
}

// ReleaseSegment frees a network's segment by its key (an index by network
// would be one more page written at every network create).
func (tx *Tx) ReleaseSegment(networkType, physnet string, id int64, networkID string) error {
	return tx.Do("DELETE FROM segment_allocations WHERE network_type = ? AND physical_network = ? AND segmentation_id = ? AND network_id = ?",
		networkType, physnet, id, networkID)
}
