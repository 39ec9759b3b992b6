/**
 * Word lists for incident codenames (SPEC §2, rule `codename`).
 *
 * A codename is said aloud, typed into Slack and read over shoulders, so every
 * word is deliberately dull: gems, colours and gentle weather; friendly
 * animals and benign mythical creatures. Left out on purpose:
 * - anything alarming or suggestive of an incident (fire, storm, worm, virus,
 *   ghost, rat, bug, whale, mule, canary...);
 * - metals and elements (iron, bronze, gold, cobalt...) and the severe-weather
 *   nouns (typhoon, blizzard, sleet, tempest, sandstorm...) that threat-intel
 *   vendors use to name nation-state actors;
 * - the animals that adversary naming schemes pair with an adjective (bear,
 *   panda, kitten, spider, chollima, tiger, jackal, leopard, buffalo, crane,
 *   lynx, ocelot, saiga, wolf), so no codename reads like an attribution;
 * - words with a slang or security meaning (snake, python, llama, falcon).
 */

/** Adjectives from gems, colours and calm weather; lowercase a–z only. */
export const ADJECTIVES: readonly string[] = [
  // gems
  'agate', 'alexandrite', 'amazonite', 'amber', 'amethyst', 'aquamarine', 'azurite', 'beryl',
  'carnelian', 'chalcedony', 'chrysoprase', 'citrine', 'coral', 'diamond', 'emerald', 'garnet',
  'heliodor', 'iolite', 'jade', 'jasper', 'kunzite', 'kyanite', 'labradorite', 'lapis',
  'larimar', 'malachite', 'moonstone', 'morganite', 'onyx', 'opal', 'pearl', 'peridot',
  'quartz', 'rhodonite', 'ruby', 'sapphire', 'sodalite', 'spinel', 'sunstone', 'tanzanite',
  'topaz', 'tourmaline', 'turquoise',
  // colours
  'apricot', 'aqua', 'azure', 'beige', 'blush', 'burgundy', 'caramel',
  'cerise', 'cerulean', 'chartreuse', 'chestnut', 'cinnamon', 'cocoa', 'cornflower', 'cream',
  'cyan', 'denim', 'ebony', 'fern', 'fuchsia', 'hazel', 'honey', 'indigo',
  'ivory', 'khaki', 'lavender', 'lemon', 'lilac', 'lime', 'magenta', 'maroon',
  'mauve', 'mint', 'mocha', 'mossy', 'mulberry', 'olive', 'orchid', 'peach',
  'periwinkle', 'plum', 'rosy', 'saffron', 'sage', 'sepia', 'sienna', 'taupe',
  'teal', 'toffee', 'umber', 'vanilla', 'violet',
  // gentle weather
  'airy', 'balmy', 'breezy', 'bright', 'clear', 'cloudy', 'crisp', 'dewy',
  'drizzly', 'foggy', 'frosty', 'halcyon', 'hazy', 'misty', 'moonlit', 'serene',
  'snowy', 'starry', 'sunlit', 'sunny', 'vernal', 'wintry',
];

/** Nouns from friendly animals and benign mythical creatures; lowercase a–z only. */
export const NOUNS: readonly string[] = [
  // mammals
  'aardvark', 'alpaca', 'anteater', 'armadillo', 'bison', 'camel', 'capybara', 'caribou',
  'chipmunk', 'dolphin', 'dormouse', 'dugong', 'echidna', 'elephant', 'elk', 'fawn',
  'gazelle', 'gerbil', 'giraffe', 'hamster', 'hedgehog', 'hippo', 'ibex', 'impala',
  'kangaroo', 'koala', 'lemur', 'manatee', 'marmot', 'meerkat', 'mongoose', 'moose',
  'narwhal', 'numbat', 'okapi', 'otter', 'pangolin', 'platypus', 'porcupine', 'porpoise',
  'quokka', 'rabbit', 'raccoon', 'reindeer', 'rhino', 'seal', 'sloth', 'squirrel',
  'tapir', 'wallaby', 'walrus', 'wombat', 'yak', 'zebra',
  // birds
  'bluebird', 'chickadee', 'cygnet', 'dove', 'egret', 'emu', 'finch', 'flamingo',
  'heron', 'hummingbird', 'ibis', 'kingfisher', 'kiwi', 'lark', 'lovebird', 'macaw',
  'nuthatch', 'oriole', 'owl', 'parakeet', 'pelican', 'penguin', 'pheasant', 'plover',
  'puffin', 'quail', 'robin', 'sandpiper', 'sparrow', 'starling', 'stork', 'swan',
  'tanager', 'toucan', 'warbler', 'wren',
  // water and small creatures
  'axolotl', 'bumblebee', 'butterfly', 'clam', 'cricket', 'frog', 'gecko', 'guppy',
  'iguana', 'lobster', 'minnow', 'newt', 'octopus', 'oyster', 'salamander', 'scallop',
  'seahorse', 'starfish', 'tortoise', 'turtle',
  // benign mythical creatures
  'alicorn', 'brownie', 'caladrius', 'centaur', 'dryad', 'faun', 'fenghuang', 'gnome',
  'griffin', 'hippogriff', 'kirin', 'kitsune', 'leprechaun', 'mermaid', 'naiad', 'nymph',
  'pegasus', 'pixie', 'qilin', 'selkie', 'simurgh', 'sphinx', 'sylph', 'tanuki',
  'unicorn', 'yeti',
];
