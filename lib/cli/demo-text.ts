// The text `sweep --demo --synthetic` and `calibrate --demo --synthetic` measure when no --text file is given.
export const DEMO_TEXT = `A mixture-of-experts layer keeps many small feed-forward networks and a router that sends each token to a few
of them. Most engines give every token the same number of experts, two or eight, whatever the token is. Dynamic
routing lets the router decide: it keeps adding the most probable experts until their summed probability passes a
threshold. A confident router stops after one expert; an unsure one asks three or four. Easy tokens such as
punctuation, the second half of a common word or a repeated name cost little, while the first token of an answer,
a number in a calculation or a rare word gets the help it needs. Measured over a text, the mean number of experts
per token can fall below two while quality holds or improves, and the lower layers of a model tend to use more
experts than the upper ones. To see it on a model, run the same text under several policies and compare the
perplexity, the experts each layer used, and the time it took. To spend a fixed budget well, give each layer its
own threshold: layers whose quality barely moves when they use fewer experts can give compute to the layers that
need it. The numbers that matter are the ones measured on your own text, with your own model, on your own machine.
`;
