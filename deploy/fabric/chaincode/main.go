package main

import (
	"log"

	"github.com/hyperledger/fabric-contract-api-go/v2/contractapi"
)

func main() {
	cc, err := contractapiNew()
	if err != nil {
		log.Fatalf("create chaosgate evidence chaincode: %v", err)
	}
	cc.Info.Title = "chaosgate-evidence"
	cc.Info.Version = "1.0.0"
	if err := cc.Start(); err != nil {
		log.Fatalf("start chaosgate evidence chaincode: %v", err)
	}
}

// contractapiNew builds the chaincode; it fails when a contract function has
// a signature the contract API cannot serve.
func contractapiNew() (*contractapi.ContractChaincode, error) {
	return contractapi.NewChaincode(&EvidenceContract{})
}
