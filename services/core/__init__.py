"""The ground floor: errors, settings, status vocabularies and the typed control-plane/worker protocol; imports nothing else of trainfaas."""
